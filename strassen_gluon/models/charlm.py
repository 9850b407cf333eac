"""Character-aware word language models (Kim et al. 2016, "large" configuration) as in the
StrassenNets language-model experiment (SPEC 2.3, 3.3).

    chars (T, N, L) -> char embedding -> char CNN (tanh, max over positions) -> highway layers
    [-> batch norm, SPN model only] -> LSTM -> dropout -> decoder -> logits (T, N, words)

Two registered models:

``charlm``     the full-precision network with ordinary Gluon layers: the original's
               LSTMCharWord (``--quant_mode 5``), the baseline and the distillation teacher.
``st_charlm``  the same network with SPN layers: char-CNN convolutions (r = channels, W_c fixed
               to the identity), highway denses, LSTM gate matrices and decoder. With
               ``out_identity=True`` every W_c is the identity (the original's quant_mode 6,
               "sp_out identity"); adding ``fixed_scale=True`` and ``dense_batchnorm=False``
               gives plain ternary weights (quant_mode 7, TWN).

The state is explicit: ``net(chars, h0, c0) -> (logits, hT, cT)``; ``net.begin_state(batch)``
gives zeros. ``chars`` holds character ids as float32 (T, N, max_word_l).
"""
from mxnet import initializer, nd
from mxnet.gluon import HybridBlock, nn, rnn

from ..config import Phase
from ..layers import SPNConv2D, SPNDense, SPNLSTM
from .registry import register

HIGHWAY_FORMS = ('kim', 'original')


class CharCNN(HybridBlock):
    """Parallel convolutions over the characters of each word, tanh, max over positions.

    Input (words, char_vec_size, 1, max_word_l); output (words, sum(feature_maps)). Each filter
    of width w spans w characters times all embedding dimensions.
    """

    def __init__(self, convs, **kwargs):
        super().__init__(**kwargs)
        self._convs = list(convs)
        for i, conv in enumerate(self._convs):
            setattr(self, 'conv%d' % i, conv)

    def hybrid_forward(self, F, x):
        # The max over positions as pick(argmax), not global max pooling, whose backward is
        # oneDNN's reference kernel (a fifth of a float32 training step, docs/precision.md), nor
        # a max reduction, whose backward gives every tied position the gradient: padded
        # positions tie. Like the pooling, pick sends it to the first maximum only.
        pooled = []
        for conv in self._convs:
            y = F.reshape(F.tanh(conv(x)), shape=(0, 0, -1))      # (words, maps, positions)
            pooled.append(F.pick(y, F.argmax(y, axis=2), axis=2))
        return F.concat(*pooled, dim=1)


class Highway(HybridBlock):
    """y = t·relu(W_H x + b_H) + (1 - t)·x with t = σ(W_T x + b_T) (Kim et al., b_T starting at
    -2) or, with form='original', t = σ(W_T (x - 2) + b_T) as the StrassenNets code wrote it."""

    def __init__(self, transform, gate, form='kim', **kwargs):
        super().__init__(**kwargs)
        self.form = form
        self.transform, self.gate = transform, gate

    def hybrid_forward(self, F, x):
        t = F.sigmoid(self.gate(x - 2.0 if self.form == 'original' else x))
        return t * F.relu(self.transform(x)) + (1.0 - t) * x


class CharLM(HybridBlock):
    """The network shared by both models; the layers are built by `charlm` / `st_charlm`."""

    # In bfloat16 (train/precision.py) only the products compute in bfloat16: the tanh, max,
    # sigmoid and gating between them are MXNet operators outside oneDNN, slower in bfloat16.
    bfloat16_activations = False

    def __init__(self, config, make_conv, make_dense, make_lstm, highway_bn, **kwargs):
        super().__init__(**kwargs)
        self.config = dict(config)
        c = self.config
        self.max_word_l, self.hidden_size = c['max_word_l'], c['rnn_size']
        # For the op counter: one word at one time step, batch 1.
        self.default_input_shape = (1, 1, c['max_word_l'])
        self.input_dtype = 'float32'
        features = sum(c['feature_maps'])
        gate_bias = initializer.Constant(-2.0) if c['highway_form'] == 'kim' \
            else initializer.Uniform(0.05)
        with self.name_scope():
            self.embedding = nn.Embedding(c['char_vocab_size'], c['char_vec_size'],
                                          prefix='embed_')
            self.char_cnn = CharCNN(
                [make_conv(maps, width, 'conv%d_' % i) for i, (maps, width)
                 in enumerate(zip(c['feature_maps'], c['kernels']))], prefix='charcnn_')
            self.highways = nn.HybridSequential(prefix='')
            for i in range(c['highway_layers']):
                self.highways.add(Highway(
                    make_dense(features, features, 'hw%d_h_' % i, 'zeros'),
                    make_dense(features, features, 'hw%d_t_' % i, gate_bias),
                    form=c['highway_form'], prefix='highway%d_' % i))
                if highway_bn:
                    self.highways.add(nn.BatchNorm(axis=1, in_channels=features,
                                                   prefix='highway%d_bn_' % i))
            self.lstm = make_lstm(features)
            self.drop = nn.Dropout(c['dropout'])
            self.decoder = make_dense(c['word_vocab_size'], c['rnn_size'], 'decoder_', 'zeros')
        self._plain_lstm = isinstance(self.lstm, rnn.LSTM)

    def example_inputs(self, ctx=None):
        """One word at one time step with zero states: what count_model counts per time step."""
        return (nd.zeros(self.default_input_shape, ctx=ctx),) + tuple(self.begin_state(1, ctx))

    def begin_state(self, batch_size, ctx=None):
        shape = (self.config['num_layers'], batch_size, self.hidden_size)
        return [nd.zeros(shape, ctx=ctx), nd.zeros(shape, ctx=ctx)]

    def hybrid_forward(self, F, chars, h0, c0):
        x = self.embedding(F.reshape(chars, shape=(-3, -2)))          # (T·N, L, E)
        x = F.expand_dims(F.transpose(x, axes=(0, 2, 1)), axis=2)   # (T·N, E, 1, L)
        x = self.highways(self.char_cnn(x))                          # (T·N, features)
        x = F.reshape_like(x, chars, lhs_begin=0, lhs_end=1, rhs_begin=0, rhs_end=2)
        if self._plain_lstm:
            out, (h, c) = self.lstm(x, [h0, c0])
        else:
            out, h, c = self.lstm(x, h0, c0)
        logits = self.decoder(F.reshape(self.drop(out), shape=(-3, -2)))
        logits = F.reshape_like(logits, chars, lhs_begin=0, lhs_end=1, rhs_begin=0, rhs_end=2)
        return logits, h, c


# The character CNN of Kim et al. (and of the original code): feature maps per kernel width.
FEATURE_MAPS = (50, 100, 150, 200, 200, 200, 200)
KERNELS = (1, 2, 3, 4, 5, 6, 7)


def _config(char_vocab_size, word_vocab_size, max_word_l, char_vec_size=15,
            feature_maps=FEATURE_MAPS, kernels=KERNELS,
            highway_layers=2, rnn_size=650, num_layers=2, dropout=0.5, highway_form='kim'):
    if len(feature_maps) != len(kernels):
        raise ValueError('feature_maps (%d values) and kernels (%d values) must have the same '
                         'length' % (len(feature_maps), len(kernels)))
    if max(kernels) > max_word_l:
        raise ValueError('kernel width %d is wider than max_word_l=%d'
                         % (max(kernels), max_word_l))
    if highway_form not in HIGHWAY_FORMS:
        raise ValueError('highway_form must be one of %s, not %r' % (HIGHWAY_FORMS, highway_form))
    return dict(char_vocab_size=int(char_vocab_size), word_vocab_size=int(word_vocab_size),
                max_word_l=int(max_word_l), char_vec_size=int(char_vec_size),
                feature_maps=[int(m) for m in feature_maps], kernels=[int(k) for k in kernels],
                highway_layers=int(highway_layers), rnn_size=int(rnn_size),
                num_layers=int(num_layers), dropout=float(dropout), highway_form=highway_form)


@register('charlm', init=initializer.Xavier)
def charlm(**kwargs):
    """Full-precision char-aware LM (the original's LSTMCharWord; quant_mode 5).

    kwargs: char_vocab_size, word_vocab_size, max_word_l (required); char_vec_size (15),
    feature_maps, kernels, highway_layers (2), rnn_size (650), num_layers (2), dropout (0.5),
    highway_form ('kim' or 'original').
    """
    config = _config(**kwargs)
    emb = config['char_vec_size']

    def make_conv(maps, width, prefix):
        return nn.Conv2D(maps, (1, width), in_channels=emb, prefix=prefix)

    def make_dense(units, in_units, prefix, bias_init):
        return nn.Dense(units, in_units=in_units, bias_initializer=bias_init, prefix=prefix)

    def make_lstm(input_size):
        return rnn.LSTM(config['rnn_size'], num_layers=config['num_layers'], layout='TNC',
                        dropout=config['dropout'], input_size=input_size, prefix='lstm_')

    return CharLM(config, make_conv, make_dense, make_lstm, highway_bn=False, prefix='charlm_')


@register('st_charlm', init=initializer.Xavier)
def st_charlm(nbr_mul=1.0, out_nbr_mul=2000, out_identity=False, fixed_scale=False,
              dense_batchnorm=True, quantizer='twn', phase=Phase.FULL, **kwargs):
    """Char-aware LM with SPN layers (the original's SumProdLSTMCharWord).

    Besides charlm's kwargs:
    nbr_mul          r = int(nbr_mul·units) for the highway denses and each LSTM gate matrix
    out_nbr_mul      the decoder's r if >= 1, else r = int(nbr_mul·words) (SPEC 2.4)
    out_identity     every W_c the identity and r = units everywhere (quant_mode 6 and 7)
    fixed_scale      every ã fixed at 1, not trained (quant_mode 7)
    dense_batchnorm  the batch norm after W_b in the dense SPNs (off in quant_mode 7)
    phase            the initial Phase of every SPN layer

    The char-CNN convolutions always have r = channels and W_c = I (identity_out), as in the
    original, where W_c was set to the identity and frozen.
    """
    if fixed_scale and not out_identity:
        raise ValueError('fixed_scale (ã = 1) needs out_identity=True (the TWN variant)')
    config = _config(**kwargs)
    config.update(nbr_mul=float(nbr_mul), out_nbr_mul=out_nbr_mul, out_identity=out_identity,
                  fixed_scale=fixed_scale, dense_batchnorm=dense_batchnorm, quantizer=quantizer)
    emb, rnn_size = config['char_vec_size'], config['rnn_size']
    # The original LM initialised W_b and W_c with MXNet's default Xavier (uniform, "avg",
    # magnitude 3), not the notebook's magnitude 2; ã starts at 1 (SPEC 2.3 differs,
    # langmod/README.md).
    common = dict(quantizer=quantizer, phase=phase, spn_initializer=initializer.Xavier())

    def make_conv(maps, width, prefix):
        # r = channels with W_c = I, as the original: a ternary convolution with a per-filter ã.
        return SPNConv2D(maps, (1, width), in_channels=emb, r=maps, identity_out=True,
                         fixed_scale=fixed_scale, prefix=prefix, **common)

    def make_dense(units, in_units, prefix, bias_init):
        if out_identity:
            rank = dict(r=units, identity_out=True, fixed_scale=fixed_scale)
        elif prefix == 'decoder_' and out_nbr_mul >= 1:
            rank = dict(r=int(out_nbr_mul))
        else:
            rank = dict(nbr_mul=nbr_mul)
        return SPNDense(units, in_units=in_units, batch_norm=dense_batchnorm,
                        bias_initializer=bias_init, prefix=prefix, **rank, **common)

    def make_lstm(input_size):
        args = dict(num_layers=config['num_layers'], input_size=input_size,
                    dropout=config['dropout'], prefix='lstm_', **common)
        if out_identity:
            return SPNLSTM(rnn_size, r=rnn_size, identity_out=True, fixed_scale=fixed_scale,
                           **args)
        return SPNLSTM(rnn_size, nbr_mul=nbr_mul, **args)

    return CharLM(config, make_conv, make_dense, make_lstm, highway_bn=True,
                  prefix='stcharlm_')
