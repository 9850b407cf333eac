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
from dataclasses import dataclass, field
from typing import List, Optional

import mxnet as mx
from mxnet import autograd, gluon, nd

from strassen_gluon.cli import contexts
from strassen_gluon.config import Phase, RunConfig
from strassen_gluon.errors import DataError, Interrupted, UsageError
from strassen_gluon.models import get_model
from strassen_gluon.train.build import choose_teacher, init_from, model_cost
from strassen_gluon.train.checkpoint import find_checkpoint, read_meta
from strassen_gluon.train.distill import distillation_loss
from strassen_gluon.train.loop import LoopOptions, Task, restore, run_phases, seed_everything
from strassen_gluon.train.phases import enter_phase, trainable_params
from strassen_gluon.train.run import open_run, write_run, write_summary
from strassen_gluon.train.schedule import PhaseSpec

from .data import Batches, load_corpus

TASK = 'langmod'
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
    data_dir: Optional[str] = None
    rnn_size: int = 650
    highway_layers: int = 2
    word_vec_size: int = 650
    char_vec_size: int = 15
    feature_maps: List[int] = field(default_factory=lambda: [50, 100, 150, 200, 200, 200, 200])
    kernels: List[int] = field(default_factory=lambda: [1, 2, 3, 4, 5, 6, 7])
    num_layers: int = 2
    dropout: float = 0.5
    nbr_mul: float = 1.0
    out_nbr_mul: int = 2000
    quant_mode: int = 0
    highway_form: str = 'kim'
    learning_rate: float = 2
    learning_rate_decay: float = 0.5
    decay_when: float = 1
    seq_length: int = 35
    batch_size: int = 20
    max_epochs: int = 25
    max_grad_norm: float = 5
    clip_like_original: bool = False
    max_word_l: int = 65
    epochs_cont: int = 0
    epochs_pre: int = 0
    learning_rate_cont: float = 0.01
    learning_rate_pre: float = 0.01
    n_words: int = 30000
    n_chars: int = 100
    print_every: int = 50
    EOS: str = '+'
    max_batches: int = 0
    max_eval_batches: int = 0
    init_from: Optional[str] = None
    seed: int = 123
    log_dir: str = DEFAULT_LOG_DIR


# Options that define the model or its data: a resumed run must keep them.
FIXED = ('data_dir', 'rnn_size', 'highway_layers', 'char_vec_size', 'feature_maps', 'kernels',
         'num_layers', 'dropout', 'nbr_mul', 'out_nbr_mul', 'quant_mode', 'highway_form',
         'seq_length', 'batch_size', 'max_word_l', 'n_words', 'n_chars', 'EOS', 'seed',
         'init_from')


def plan_phases(config):
    """The stages of the original's train() calls: pre-training, main, continued training."""
    mode = QUANT_MODES[config.quant_mode]
    phases = []
    if mode.staged and config.epochs_pre > 0:
        phases.append(PhaseSpec('pre', Phase.FULL, config.epochs_pre, config.learning_rate_pre,
                                factor=config.learning_rate_decay,
                                decay_when=config.decay_when))
    phases.append(PhaseSpec('main', mode.phase, config.max_epochs, config.learning_rate,
                            factor=config.learning_rate_decay, decay_when=config.decay_when))
    if mode.staged and config.epochs_cont > 0:
        # The original's continued training decays whenever the perplexity does not improve.
        phases.append(PhaseSpec('cont', mode.phase, config.epochs_cont,
                                config.learning_rate_cont, factor=config.learning_rate_decay,
                                decay_when=0.0, frozen=True))
    return [p for p in phases if p.epochs > 0]


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


def load_teacher(path, config, vocab, ctx):
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
        """SGD without momentum or weight decay over the parameters that train in this phase."""
        params = trainable_params(net)
        self._trained = list(params.values())
        return gluon.Trainer(params, 'sgd', {'learning_rate': lr, 'momentum': 0.0, 'wd': 0.0},
                             kvstore=None)

    def evaluate(self, net):
        return {'val_ppl': evaluate(net, self.data['valid'], self.ctx,
                                    self.config.max_eval_batches)}

    def end_phase(self, net, spec):
        return {'test_ppl': evaluate(net, self.data['test'], self.ctx,
                                     self.config.max_eval_batches)}


def train(config, explicit=None, command=None, say=None):
    """Train (or resume) one run; returns its summary, or None when stopped early by
    `stop_after_epochs`. Raises the library's errors."""
    if config.quant_mode not in QUANT_MODES:
        raise UsageError('quant_mode must be one of %s' % sorted(QUANT_MODES))
    if not config.resume:
        config.data_dir = os.path.abspath(config.data_dir or DEFAULT_DATA_DIR)
        config.log_dir = os.path.abspath(config.log_dir or DEFAULT_LOG_DIR)
    run_dir, config, record = open_run(config, TASK, FIXED, command or 'train(%r)' % (config,),
                                       explicit, default_name='qm%d' % config.quant_mode)
    if say is None:
        def say(*a):
            if not config.quiet:
                print(*a, flush=True)
    ctxs = contexts(config.devices, say)
    if len(ctxs) > 1:
        raise UsageError('the language model trains on one device; give one --gpu_index')
    ctx = ctxs[0]
    corpus = load_corpus_or_fail(config)
    vocab = corpus.vocab
    data = {split: Batches(*corpus.splits[split], config.batch_size, config.seq_length,
                           keep_all=split == 'test') for split in corpus.splits}
    say('data %s: %d words, %d characters, max_word_l %d; batches train %d, valid %d, test %d'
        % (config.data_dir, vocab.word_vocab_size, vocab.char_vocab_size, vocab.max_word_l,
           len(data['train']), len(data['valid']), len(data['test'])))
    mode = QUANT_MODES[config.quant_mode]
    for what, epochs in (('epochs_pre', config.epochs_pre), ('epochs_cont', config.epochs_cont)):
        if epochs and not mode.staged:
            say('note: --%s applies to quant_mode %s only; ignored' % (what, STAGED_MODES))
    if config.teacher_model and not mode.staged:
        say('note: distillation applies to quant_mode %s only; --teacher_model ignored'
            % (STAGED_MODES,))
    if config.init_from and mode.model == 'charlm':
        raise UsageError('--init_from converts the dense model (quant_mode 5) into an SPN '
                         'model (quant_mode 0-4, 6, 7); this run is quant_mode 5 itself')

    name, kwargs = model_spec(config, vocab)
    phases = plan_phases(config)
    if not phases:
        raise UsageError('no epochs to train (all stage lengths are 0)')
    seed_everything(config.seed)
    net = get_model(name, **kwargs)
    net.initialize(ctx=ctx)
    dense = None
    if config.init_from:
        calibration = (_to_nd(data['train'].chunk(0)[0], ctx),) + tuple(
            net.begin_state(config.batch_size, ctx))
        net(*calibration)
        if os.path.isdir(config.init_from):
            ckpt = find_checkpoint(config.init_from)
            if ckpt is not None:
                _check_vocab(read_meta(ckpt).get('model_kwargs', {}), vocab, ckpt,
                             '--init_from run')
        dense, _ = init_from(config.init_from, net, name, [ctx], calibration, say=say)
    teacher = None
    if mode.staged:  # distillation applies to the quantised modes only, as in the original
        teacher = choose_teacher(config, dense,
                                 lambda path: load_teacher(path, config, vocab, ctx), say)
    write_run(run_dir, record, model=name, model_kwargs=kwargs, files=corpus.files,
              vocab=vocab_info(vocab))
    net.hybridize()
    start, ckpt = restore(net, run_dir, phases, ctx)
    say('run folder %s%s' % (run_dir, ' (resumed from %s)' % os.path.basename(ckpt)
                             if ckpt else ''))
    options = LoopOptions(momentum=0.0, wd=0.0, dist_lambda=config.dist_lambda,
                          dist_temp=config.dist_temp, sync_every=config.print_every or 10 ** 9,
                          print_sync=config.print_every > 0 and not config.quiet,
                          progress=False, seed=config.seed,
                          keep_checkpoints=config.keep_checkpoints, print_fn=say)
    task = LanguageModelTask(options, config, ctx, data, teacher)
    meta = dict(model=name, model_kwargs=kwargs, seed=config.seed, task=TASK,
                vocab=vocab_info(vocab), run_dir=os.path.abspath(run_dir))
    if start[0] < len(phases):
        for spec in phases[start[0]:]:
            say('stage %s: %s, %d epochs from lr %g%s' % (
                spec.name, 'full-precision model' if mode.model == 'charlm' else
                'SPN phase %s' % Phase(spec.phase).name.lower(), spec.epochs, spec.lr,
                ', W_b and W_c frozen' if spec.frozen else ''))
        try:
            status = run_phases(task, net, phases, run_dir, meta, start=start, checkpoint=ckpt,
                                stop_after_epochs=config.stop_after_epochs)
        except KeyboardInterrupt:
            raise Interrupted('interrupted; the last complete epoch is saved: continue with '
                              'python train.py --resume %s' % run_dir) from None
        if status == 'stopped':
            say('stopped; continue with: python train.py --resume %s' % run_dir)
            return None
    else:
        say('%s: the run is already finished' % run_dir)
    enter_phase(net, phases[-1])
    cost = model_cost(net, inputs=net.example_inputs(ctx=ctx))
    if cost is not None:
        cost['per'] = 'time step'
    summary = write_summary(run_dir, record, task, phases, cost=cost)
    say('test ppl %.2f%s' % (summary['metrics'].get('test_ppl', math.nan),
                             '; per time step: %d multiplications, %d additions'
                             % (cost['mults'], cost['adds']) if cost else ''))
    return summary
