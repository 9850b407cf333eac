"""The character-aware (Strassen) language model as a task of the shared training loop.

``train(LMConfig(...))`` trains one run and returns its summary (the run folder schema of
strassen_gluon.train.run); ``train.py`` in this folder is the original command line on top of it.

quant_mode, in one table (``QUANT_MODES``): the model, the SPN phase of the main stage, and
whether the quantised main stage gets full-precision pre-training (--epochs_pre), continued
training with W_b/W_c frozen (--epochs_cont) and a distillation teacher. Every stage runs on the
loop with the original's learning-rate policy: the rate is multiplied by --learning_rate_decay
when the validation perplexity did not improve by more than --decay_when over the previous
epoch. SGD without momentum or weight decay, one update per chunk of seq_length words, the
gradient's global norm clipped, the LSTM state carried from chunk to chunk.
"""
import math
import os
from dataclasses import dataclass
from typing import List, Optional

import mxnet as mx
from mxnet import autograd, gluon, nd

from strassen_gluon.config import Phase, RunConfig, option
from strassen_gluon.errors import DataError, UsageError
from strassen_gluon.models import get_model
from strassen_gluon.models.charlm import FEATURE_MAPS, KERNELS
from strassen_gluon.train import driver
from strassen_gluon.train.build import model_cost
from strassen_gluon.train.checkpoint import find_checkpoint, read_meta
from strassen_gluon.train.distill import distillation_loss
from strassen_gluon.train.loop import Task
from strassen_gluon.train.stages import trainable_params
from strassen_gluon.train.schedule import Stage

from .data import Batches, load_corpus

TASK = 'langmod'
MODULE = 'langmod.train'
HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA_DIR = os.path.join(HERE, 'data', 'ptb')
DEFAULT_LOG_DIR = os.path.join(HERE, 'logs')


@dataclass(frozen=True)
class QuantMode:
    model: str
    phase: Phase          # of the SPN layers in the main stage (DENSE for the dense model)
    staged: bool          # pre-training, continued training and distillation apply
    meaning: str


QUANT_MODES = {
    0: QuantMode('st_charlm', Phase.DENSE, False, 'dense layers of the SPN model'),
    1: QuantMode('st_charlm', Phase.FULL, False, 'full-precision SPNs'),
    2: QuantMode('st_charlm', Phase.TERNARY, True, 'W_b and W_c ternary (the Strassen LM)'),
    3: QuantMode('st_charlm', Phase.TERNARY_B, True, 'only W_b ternary'),
    4: QuantMode('st_charlm', Phase.TERNARY_C, True, 'only W_c ternary'),
    5: QuantMode('charlm', Phase.DENSE, False, 'the full-precision baseline (teacher)'),
    6: QuantMode('st_charlm', Phase.TERNARY_B, True,
                 'W_c = identity, W_b ternary with a learned scale per output'),
    # The original did not pre-train mode 7; here it does, like 6.
    7: QuantMode('st_charlm', Phase.TERNARY_B, True,
                 'ternary weights (TWN): mode 6 without ã and the dense SPNs\' batch norm'),
}
STAGED_MODES = tuple(m for m, q in QUANT_MODES.items() if q.staged)


@dataclass
class LMConfig(RunConfig):
    """The original train.py's options (same names, defaults and meaning) plus the shared ones."""
    data_dir: Optional[str] = option(
        None, 'folder with ptb.train.txt, ptb.valid.txt, ptb.test.txt (or train.txt, '
              'valid.txt, test.txt); default $STRASSEN_PTB_DIR, then langmod/data/ptb',
        group='data')
    rnn_size: int = option(650, 'size of LSTM internal state', low=1, group='model')
    highway_layers: int = option(2, 'number of highway layers', low=0, group='model')
    word_vec_size: int = option(650, 'unused (kept from the original)', low=1, group='model')
    char_vec_size: int = option(15, 'dimensionality of character embeddings', low=1,
                                group='model')
    feature_maps: List[int] = option(list(FEATURE_MAPS), 'number of feature maps in the CNN',
                                     low=1, group='model')
    kernels: List[int] = option(list(KERNELS), 'conv net kernel widths', low=1, group='model')
    num_layers: int = option(2, 'number of layers in the LSTM', low=1, group='model')
    dropout: float = option(0.5, 'dropout. 0 = no dropout', low=0, below=1, group='model')
    nbr_mul: float = option(1.0, 'multiplications r relative to the output units (highway, '
                                 'LSTM; decoder if out_nbr_mul < 1)', above=0, group='model')
    out_nbr_mul: int = option(2000, 'number of multiplications r of the decoder, for quant_mode '
                                    '1-4', low=1, group='model')
    quant_mode: int = option(0, '; '.join('%d: %s' % (m, q.meaning)
                                          for m, q in QUANT_MODES.items()),
                             choices=tuple(QUANT_MODES), group='model')
    highway_form: str = option('kim', 'transform gate sigma(W_T x + b_T) with b_T starting at -2 '
                                      '(kim, Kim et al.) or sigma(W_T (x - 2) + b_T) as the '
                                      'original code (original)', choices=('kim', 'original'),
                               group='model')
    init_from: Optional[str] = option(
        None, 'start the SPN model from a finished quant_mode 5 run (its char CNN, highway, '
              'LSTM and decoder weights); the dense model also becomes the teacher of '
              'quant_mode 2-4, 6, 7 (--dist_lambda 0 turns it off)', metavar='RUN_DIR',
        group='model')
    learning_rate: float = option(2.0, 'starting learning rate', above=0,
                                  group='optimization')
    learning_rate_decay: float = option(0.5, 'learning rate decay', above=0, high=1,
                                        group='optimization')
    decay_when: float = option(1.0, 'decay if validation perplexity does not improve by more '
                                    'than this much', low=0, group='optimization')
    seq_length: int = option(35, 'number of timesteps to unroll for', low=1,
                             group='optimization')
    batch_size: int = option(20, 'number of sequences to train on in parallel', low=1,
                             group='optimization')
    max_epochs: int = option(25, 'number of full passes through the training data', low=0,
                             group='optimization')
    max_grad_norm: float = option(5.0, 'clip the global norm of the token-averaged gradient at '
                                       'this value', above=0, group='optimization')
    clip_like_original: bool = option(False, 'clip as the original code did, effectively at '
                                             'max_grad_norm x seq_length', group='optimization')
    max_word_l: int = option(65, 'maximum word length', low=1, group='data')
    epochs_cont: int = option(0, 'epochs of continued training with frozen ternary weights',
                              low=0, group='optimization')
    epochs_pre: int = option(0, 'epochs of full-precision pretraining', low=0,
                             group='optimization')
    learning_rate_cont: float = option(0.01, 'learning rate for continued training with frozen '
                                             'weights', above=0, group='optimization')
    learning_rate_pre: float = option(0.01, 'learning rate for full-precision pretraining',
                                      above=0, group='optimization')
    n_words: int = option(30000, 'max number of words in model', low=1, group='data')
    n_chars: int = option(100, 'max number of char in model', low=1, group='data')
    print_every: int = option(50, 'how many steps/minibatches between printing out the loss '
                                  '(0: never)', low=0, group='run')
    EOS: str = option('+', '<EOS> symbol. should be a single unused character (like +) for PTB '
                           'and blank for others', group='data')
    max_batches: int = option(0, 'train on at most this many batches per epoch (0: all)', low=0,
                              group='data')
    max_eval_batches: int = option(0, 'evaluate on at most this many batches of valid and test '
                                      '(0: all)', low=0, group='data')
    seed: int = option(123, "seed of initialisation, shuffling and dropout (the original's "
                            "123)", low=0, group='run')
    log_dir: str = option(DEFAULT_LOG_DIR, 'parent folder of the run folders', group='run')


# Options that define the model or its data: a resumed run must keep them.
FIXED = ('data_dir', 'rnn_size', 'highway_layers', 'char_vec_size', 'feature_maps', 'kernels',
         'num_layers', 'dropout', 'nbr_mul', 'out_nbr_mul', 'quant_mode', 'highway_form',
         'seq_length', 'batch_size', 'max_word_l', 'n_words', 'n_chars', 'EOS', 'seed',
         'init_from')


def plan_stages(config):
    """The stages of the original's train() calls: pre-training, main, continued training."""
    mode = QUANT_MODES[config.quant_mode]
    stages = []
    if mode.staged and config.epochs_pre > 0:
        stages.append(Stage('pre', Phase.FULL, config.epochs_pre, config.learning_rate_pre,
                                factor=config.learning_rate_decay,
                                decay_when=config.decay_when))
    stages.append(Stage('main', mode.phase, config.max_epochs, config.learning_rate,
                            factor=config.learning_rate_decay, decay_when=config.decay_when))
    if mode.staged and config.epochs_cont > 0:
        # The original's continued training decays whenever the perplexity does not improve.
        stages.append(Stage('cont', mode.phase, config.epochs_cont,
                                config.learning_rate_cont, factor=config.learning_rate_decay,
                                decay_when=0.0, frozen=True))
    return [p for p in stages if p.epochs > 0]


def model_spec(config, vocab):
    """(registered model name, its kwargs) for the run's quant_mode and data."""
    mode = QUANT_MODES[config.quant_mode]
    kwargs = dict(char_vocab_size=vocab.char_vocab_size, word_vocab_size=vocab.word_vocab_size,
                  max_word_l=vocab.max_word_l, char_vec_size=config.char_vec_size,
                  feature_maps=list(config.feature_maps), kernels=list(config.kernels),
                  highway_layers=config.highway_layers, rnn_size=config.rnn_size,
                  num_layers=config.num_layers, dropout=config.dropout,
                  highway_form=config.highway_form)
    if mode.model == 'charlm':
        return mode.model, kwargs
    if config.quant_mode in (6, 7):
        # nbr_mul forced to 1 and W_c = I everywhere, so r = units (decoder r = words).
        kwargs.update(nbr_mul=1.0, out_identity=True, fixed_scale=config.quant_mode == 7,
                      dense_batchnorm=config.quant_mode != 7)
    else:
        kwargs.update(nbr_mul=config.nbr_mul, out_nbr_mul=config.out_nbr_mul)
    kwargs['phase'] = int(mode.phase)
    return mode.model, kwargs


def load_corpus_or_fail(config):
    try:
        return load_corpus(config.data_dir, config.max_word_l, config.n_words, config.n_chars,
                           config.EOS)
    except (OSError, ValueError) as err:
        raise DataError(str(err)) from None


def vocab_info(vocab):
    return dict(word_vocab_size=vocab.word_vocab_size, char_vocab_size=vocab.char_vocab_size,
                max_word_l=vocab.max_word_l)


def load_lm_teacher(path, config, vocab, ctx):
    """The frozen quant_mode 5 teacher: from a run or checkpoint folder (its stored sizes), or
    from a bare .params file (this run's sizes, as the original did)."""
    if os.path.isfile(path):
        kwargs = model_spec(LMConfig(**dict(vars(config), quant_mode=5)), vocab)[1]
        params = path
    else:
        ckpt = find_checkpoint(path) if os.path.isdir(path) else None
        if ckpt is None:
            raise UsageError('--teacher_model %s is neither a .params file nor a run or '
                             'checkpoint folder of train.py' % path)
        meta = read_meta(ckpt)
        if meta.get('model') != 'charlm':
            raise UsageError('the teacher must be a quant_mode 5 model; %s holds a %s'
                             % (ckpt, meta.get('model')))
        kwargs, params = dict(meta['model_kwargs']), os.path.join(ckpt, 'model.params')
        _check_vocab(kwargs, vocab, ckpt, 'teacher')
    kwargs['dropout'] = 0.0
    teacher = get_model('charlm', **kwargs)
    try:
        teacher.load_parameters(params, ctx=ctx)
    except (AssertionError, mx.base.MXNetError) as err:
        raise UsageError('cannot load the teacher %s: %s' % (params, err)) from None
    teacher.collect_params().setattr('grad_req', 'null')
    teacher.hybridize()
    return teacher


def _check_vocab(kwargs, vocab, source, what):
    for key in ('word_vocab_size', 'char_vocab_size', 'max_word_l'):
        if kwargs.get(key) != getattr(vocab, key):
            raise UsageError('the %s %s has %s = %s, this data has %s; use the same data'
                             % (what, source, key, kwargs.get(key), getattr(vocab, key)))


def _to_nd(array, ctx):
    return nd.array(array, ctx=ctx, dtype='float32')


def perplexity(mean_nll):
    return math.exp(mean_nll) if mean_nll < 700 else math.inf


def token_nll(logits, targets):
    return -nd.pick(nd.log_softmax(logits, axis=-1), targets, axis=-1)


def evaluate(net, batches, ctx, max_batches=0):
    """Perplexity over the split's words (padding masked), state carried across chunks."""
    n = len(batches) if not max_batches else min(max_batches, len(batches))
    h, c = net.begin_state(batches.batch_size, ctx)
    total, words = nd.zeros((1,), ctx=ctx, dtype='float64'), 0.0
    for i in range(n):
        chars, targets, mask = batches.chunk(i)
        logits, h, c = net(_to_nd(chars, ctx), h, c)
        nll = token_nll(logits, _to_nd(targets, ctx))
        if mask is not None:
            nll, words = nll * _to_nd(mask, ctx), words + float(mask.sum())
        else:
            words += targets.size
        total += nll.sum().astype('float64')
    return perplexity(float(total.asscalar()) / max(words, 1.0))  # SYNC POINT


class _Chunks:
    """One epoch of training chunks as (chars, targets) NDArrays, in order."""

    def __init__(self, batches, ctx, max_batches):
        self.batches, self.ctx = batches, ctx
        self.n = len(batches) if not max_batches else min(max_batches, len(batches))

    def __len__(self):
        return self.n

    def __iter__(self):
        for i in range(self.n):
            chars, targets, _ = self.batches.chunk(i)
            yield _to_nd(chars, self.ctx), _to_nd(targets, self.ctx)


class LanguageModelTask(Task):
    """Word-level language modelling: perplexity, clipped SGD, state across chunks."""
    primary_metric = 'val_ppl'
    higher_is_better = False
    unit = 'tokens'

    def __init__(self, options, config, ctx, data, teacher=None):
        super().__init__(options)
        self.config, self.ctx, self.data, self.teacher = config, ctx, data, teacher
        self.clip = config.max_grad_norm * (config.seq_length if config.clip_like_original
                                            else 1)

    def train_batches(self, global_epoch):
        return _Chunks(self.data['train'], self.ctx, self.config.max_batches)

    def begin_epoch(self, net):
        n = self.data['train'].batch_size
        teacher = self.teacher.begin_state(n, self.ctx) if self.teacher else (None, None)
        return tuple(net.begin_state(n, self.ctx)) + tuple(teacher)

    def step(self, net, trainer, batch, state):
        x, y = batch
        h, c, th, tc = state
        teacher_logits = None
        if self.teacher is not None:
            teacher_logits, th, tc = self.teacher(x, th, tc)
        o = self.options
        with autograd.record():
            logits, h, c = net(x, h, c)
            loss = distillation_loss(nd, logits, teacher_logits, y, o.dist_lambda,
                                     o.dist_temp).mean()
        loss.backward()
        grads = [p.grad(self.ctx) for p in self._trained]
        gluon.utils.clip_global_norm(grads, self.clip, check_isfinite=False)  # no host sync
        trainer.step(1)
        nll = loss if self.teacher is None else token_nll(logits, y).mean()
        tokens = y.size
        # The training perplexity is the mean token cross-entropy (of the labels, also when
        # distilling), as the original printed it.
        return (h.detach(), c.detach(), th, tc), {'loss': nll * tokens}, tokens

    def train_metrics(self, totals, count):
        mean = totals['loss'] / max(count, 1)
        return {'train_loss': mean, 'train_ppl': perplexity(mean)}

    def make_trainer(self, net, lr):
        """SGD without momentum or weight decay over the parameters that train in this stage."""
        params = trainable_params(net)
        self._trained = list(params.values())
        return gluon.Trainer(params, 'sgd', {'learning_rate': lr, 'momentum': 0.0, 'wd': 0.0},
                             kvstore=None)

    def evaluate(self, net):
        return {'val_ppl': evaluate(net, self.data['valid'], self.ctx,
                                    self.config.max_eval_batches)}

    def end_stage(self, net, spec):
        return {'test_ppl': evaluate(net, self.data['test'], self.ctx,
                                     self.config.max_eval_batches)}


class LanguageModelRecipe(driver.Recipe):
    """The language model as a command of the run driver (strassen_gluon.train.driver)."""
    task = TASK
    module = MODULE
    # bench/dtype.py: 0.69x (quant_mode 5) and 0.73x (quant_mode 2) of float32: the LSTM stays
    # float32 and the char CNN's max-over-time pooling runs oneDNN's reference backward.
    bfloat16_pays = False
    # Options that define the model or its data: a resumed run must keep them.
    fixed = ('data_dir', 'rnn_size', 'highway_layers', 'char_vec_size', 'feature_maps',
             'kernels', 'num_layers', 'dropout', 'nbr_mul', 'out_nbr_mul', 'quant_mode',
             'highway_form', 'seq_length', 'batch_size', 'max_word_l', 'n_words', 'n_chars',
             'EOS', 'seed', 'init_from')

    def default_name(self, config):
        return 'qm%d' % config.quant_mode

    def prepare(self, config):
        if len(config.feature_maps) != len(config.kernels):
            raise UsageError('--feature_maps has %d values and --kernels %d; give one feature '
                             'map count per kernel width' % (len(config.feature_maps),
                                                             len(config.kernels)))
        if not config.resume:
            config.data_dir = os.path.abspath(config.data_dir or os.environ.get(
                'STRASSEN_PTB_DIR') or DEFAULT_DATA_DIR)
        return config

    def load_data(self, config, ctx, say):
        if len(ctx) > 1:
            raise UsageError('the language model trains on one device; give one --gpu_index')
        corpus = load_corpus_or_fail(config)
        vocab = corpus.vocab
        data = {split: Batches(*corpus.splits[split], config.batch_size, config.seq_length,
                               keep_all=split == 'test') for split in corpus.splits}
        say('data %s: %d words, %d characters, max_word_l %d; batches train %d, valid %d, '
            'test %d' % (config.data_dir, vocab.word_vocab_size, vocab.char_vocab_size,
                         vocab.max_word_l, len(data['train']), len(data['valid']),
                         len(data['test'])))
        mode = QUANT_MODES[config.quant_mode]
        for what in ('epochs_pre', 'epochs_cont', 'teacher_model'):
            if getattr(config, what) and not mode.staged:
                say('note: --%s applies to quant_mode %s only; ignored'
                    % (what, ', '.join(map(str, STAGED_MODES))))
        if config.init_from and mode.model == 'charlm':
            raise UsageError('--init_from converts the dense model (quant_mode 5) into an SPN '
                             'model (quant_mode 0-4, 6, 7); this run is quant_mode 5 itself')
        return corpus, data

    def model(self, config, data):
        return model_spec(config, data[0].vocab)

    def stages(self, config, spn, say):
        return plan_stages(config)

    def calibration(self, net, data, ctx):
        train = data[1]['train']
        return ((_to_nd(train.chunk(0)[0], ctx[0]),)
                + tuple(net.begin_state(train.batch_size, ctx[0])))

    def check_init_source(self, config, data):
        if os.path.isdir(config.init_from):
            ckpt = find_checkpoint(config.init_from)
            if ckpt is not None:
                _check_vocab(read_meta(ckpt).get('model_kwargs', {}), data[0].vocab, ckpt,
                             '--init_from run')

    def use_teacher(self, config):
        # Distillation applies to the quantised modes only, as in the original.
        return QUANT_MODES[config.quant_mode].staged

    def load_teacher(self, path, config, data, ctx, say):
        return load_lm_teacher(path, config, data[0].vocab, ctx[0])

    def loop_options(self, config):
        return dict(momentum=0.0, wd=0.0, sync_every=config.print_every or 10 ** 9,
                    print_sync=config.print_every > 0 and not config.quiet, progress=False)

    def make_task(self, config, options, ctx, data, teacher):
        return LanguageModelTask(options, config, ctx[0], data[1], teacher)

    def cost(self, net, config, ctx):
        cost = model_cost(net, inputs=net.example_inputs(ctx=ctx[0]))
        if cost is not None:
            cost['per'] = 'time step'
        return cost

    def record(self, data):
        return dict(files=data[0].files, vocab=vocab_info(data[0].vocab))

    def result(self, summary):
        return 'test ppl %.2f' % summary['metrics'].get('test_ppl', math.nan)


def train(config, explicit=None, command=None, say=None):
    """Train (or resume) one run; returns its summary, or None when stopped early by
    `stop_after_epochs`. See strassen_gluon.train.driver.run."""
    return driver.run(config, LanguageModelRecipe(), explicit, command, say)
