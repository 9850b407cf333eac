"""Train the character-aware (Strassen) word language model on Penn Treebank.

The command line of the original StrassenNets ``langmod/train.py`` (same option names and
defaults), with its defects fixed (see langmod/README.md). Run from this folder, e.g.

    python3 train.py --quant_mode 5 --max_epochs 40 --decay_when 0.5 --learning_rate 2
    python3 train.py --quant_mode 2 --max_epochs 20 --decay_when 0.5 --nbr_mul 1.0 \\
        --out_nbr_mul 2000 --learning_rate 0.2 --epochs_pre 20 --learning_rate_pre 2

quant_mode: 0 dense layers of the SPN model, 1 full-precision SPNs, 2 W_b and W_c ternary (the
Strassen LM), 3 only W_b ternary, 4 only W_c ternary, 5 the full-precision baseline (teacher),
6 W_c = identity and W_b ternary with a learned scale per output, 7 TWN (6 without ã and
without the dense SPNs' batch norm).

Each run writes a folder in --log_dir: config.json, log.jsonl (one line per epoch, a test line
per phase, the operation count), a checkpoint after every epoch (``--resume RUN_DIR`` continues
from it) and summary.json at the end.
"""
import argparse
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from strassen_gluon import Phase
from strassen_gluon.layers import clip_scales, freeze_ternary, set_phase, spn_layers
from strassen_gluon.models import get_model
from strassen_gluon.train.checkpoint import (git_revision, latest_checkpoint,
                                             load_trainer_states, read_meta, save_checkpoint,
                                             write_json_atomic)
from strassen_gluon.train.distill import distillation_loss
from strassen_gluon.train.logs import append_jsonl
from strassen_gluon.train.phases import make_trainer, trainable_params

try:  # imported as langmod.train (tests, benchmarks)
    from .data import Batches, load_corpus
except ImportError:  # run as a script: this folder is on sys.path
    from data import Batches, load_corpus

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA_DIR = os.path.join(HERE, 'data', 'ptb')
DEFAULT_LOG_DIR = os.path.join(HERE, 'logs')
LOG_NAME, CONFIG_NAME, SUMMARY_NAME = 'log.jsonl', 'config.json', 'summary.json'

# quant_mode -> (model, phase of the SPN layers in the main stage)
QUANT_MODES = {0: ('st_charlm', Phase.DENSE), 1: ('st_charlm', Phase.FULL),
               2: ('st_charlm', Phase.TERNARY), 3: ('st_charlm', Phase.TERNARY_B),
               4: ('st_charlm', Phase.TERNARY_C), 5: ('charlm', None),
               6: ('st_charlm', Phase.TERNARY_B), 7: ('st_charlm', Phase.TERNARY_B)}
# Modes with a quantized main stage: full-precision pre-training, continued training with W_b,
# W_c frozen, and distillation apply (the original: 2, 3, 4, 6; 7 added).
STAGED_MODES = (2, 3, 4, 6, 7)
# Options a resumed run takes from the command line rather than from the stored run.
RUNTIME_OPTIONS = ('gpu_index', 'print_every', 'quiet')


def build_parser():
    p = argparse.ArgumentParser(
        description='Train a word+character-level language model (StrassenNets, Penn Treebank)')
    a = p.add_argument
    # data
    a('--data_dir', type=str, default=None,
      help='folder with ptb.train.txt, ptb.valid.txt, ptb.test.txt (or train.txt, valid.txt, '
           'test.txt) (default: data/ptb next to this script)')
    # model
    a('--rnn_size', type=int, default=650, help='size of LSTM internal state')
    a('--highway_layers', type=int, default=2, help='number of highway layers')
    a('--word_vec_size', type=int, default=650, help='unused (kept from the original)')
    a('--char_vec_size', type=int, default=15, help='dimensionality of character embeddings')
    a('--feature_maps', type=int, nargs='+', default=[50, 100, 150, 200, 200, 200, 200],
      help='number of feature maps in the CNN')
    a('--kernels', type=int, nargs='+', default=[1, 2, 3, 4, 5, 6, 7],
      help='conv net kernel widths')
    a('--num_layers', type=int, default=2, help='number of layers in the LSTM')
    a('--dropout', type=float, default=0.5, help='dropout. 0 = no dropout')
    a('--nbr_mul', type=float, default=1.0,
      help='multiplications r relative to the output units (highway, LSTM; decoder if '
           'out_nbr_mul < 1)')
    a('--out_nbr_mul', type=int, default=2000,
      help='number of multiplications r of the decoder, for quant_mode 1-4')
    a('--quant_mode', type=int, default=0, choices=range(8),
      help='0: dense layers of the SPN model, 1: full-precision SPN, 2: ternary SPN (Strassen), '
           '3: only W_b ternary, 4: only W_c ternary, 5: full-precision baseline, '
           '6: W_c = identity, W_b ternary, 7: ternary weights (TWN)')
    a('--highway_form', choices=('kim', 'original'), default='kim',
      help="transform gate sigma(W_T x + b_T) with b_T starting at -2 (kim, Kim et al.) or "
           "sigma(W_T (x - 2) + b_T) as the original code (original)")
    # optimization
    a('--learning_rate', type=float, default=2, help='starting learning rate')
    a('--learning_rate_decay', type=float, default=0.5, help='learning rate decay')
    a('--decay_when', type=float, default=1,
      help='decay if validation perplexity does not improve by more than this much')
    a('--seq_length', type=int, default=35, help='number of timesteps to unroll for')
    a('--batch_size', type=int, default=20, help='number of sequences to train on in parallel')
    a('--max_epochs', type=int, default=25, help='number of full passes through the training data')
    a('--max_grad_norm', type=float, default=5,
      help='clip the global norm of the token-averaged gradient at this value')
    a('--clip_like_original', action='store_true',
      help='clip as the original code did, effectively at max_grad_norm x seq_length')
    a('--max_word_l', type=int, default=65, help='maximum word length')
    a('--epochs_cont', type=int, default=0,
      help='epochs of continued training with frozen ternary weights')
    a('--epochs_pre', type=int, default=0, help='epochs of full-precision pretraining')
    a('--learning_rate_cont', type=float, default=0.01,
      help='learning rate for continued training with frozen weights')
    a('--learning_rate_pre', type=float, default=0.01,
      help='learning rate for full-precision pretraining')
    a('--n_words', type=int, default=30000, help='max number of words in model')
    a('--n_chars', type=int, default=100, help='max number of char in model')
    # misc
    a('--gpu_index', type=int, default=None,
      help='GPU to use, -1 for the CPU (default: GPU 0 if there is one, else the CPU)')
    a('--print_every', type=int, default=50,
      help='how many steps/minibatches between printing out the loss')
    a('--log_dir', type=str, default=None,
      help='folder for the run folders (default: logs next to this script)')
    a('--EOS', type=str, default='+',
      help='<EOS> symbol. should be a single unused character (like +) for PTB and blank for '
           'others')
    # distillation
    a('--teacher_model', type=str, default=None,
      help='distil from this quant_mode 5 model: a run folder or checkpoint folder of this '
           'script, or a .params file of a model with this run\'s sizes')
    a('--dist_lambda', type=float, default=0.5, help='Weight for distillation loss term')
    a('--dist_temp', type=float, default=1.0, help='Temperature for distillation')
    # short runs, reproducibility, resuming
    a('--max_batches', type=int, default=0,
      help='train on at most this many batches per epoch (0: all)')
    a('--max_eval_batches', type=int, default=0,
      help='evaluate on at most this many batches of valid and test (0: all)')
    a('--seed', type=int, default=123, help='random seed')
    a('--run_name', type=str, default=None,
      help='name of the run folder in --log_dir (default: date-time and quant mode)')
    a('--resume', type=str, default=None, metavar='RUN_DIR',
      help='continue the run in RUN_DIR from its last checkpoint, with its stored options')
    a('--quiet', action='store_true', help='print nothing but errors')
    return p


def parse_args(argv=None):
    parser = build_parser()
    opt = parser.parse_args(argv)
    for key in ('learning_rate', 'learning_rate_pre', 'learning_rate_cont', 'learning_rate_decay',
                'max_grad_norm', 'dist_lambda', 'dist_temp', 'nbr_mul', 'dropout'):
        if not (math.isfinite(getattr(opt, key)) and getattr(opt, key) >= 0):
            parser.error('--%s must be a finite number >= 0, not %s' % (key, getattr(opt, key)))
    if opt.resume is None:
        opt.data_dir = os.path.abspath(opt.data_dir or DEFAULT_DATA_DIR)
        opt.log_dir = os.path.abspath(opt.log_dir or DEFAULT_LOG_DIR)
    return opt


@dataclass
class Stage:
    """One call of the original's train(): pre-training, main or continued training."""
    name: str
    phase: object       # Phase of the SPN layers (None for the full-precision model)
    epochs: int
    lr: float
    decay_when: float
    frozen: bool        # W_b and W_c frozen


def plan_stages(opt):
    mode = opt.quant_mode
    main_phase = QUANT_MODES[mode][1]
    stages = []
    if mode in STAGED_MODES and opt.epochs_pre > 0:
        stages.append(Stage('pre', Phase.FULL, opt.epochs_pre, opt.learning_rate_pre,
                            opt.decay_when, False))
    stages.append(Stage('main', main_phase, opt.max_epochs, opt.learning_rate, opt.decay_when,
                        False))
    if mode in STAGED_MODES and opt.epochs_cont > 0:
        stages.append(Stage('cont', main_phase, opt.epochs_cont, opt.learning_rate_cont, 0.0,
                            True))
    return stages


def model_spec(opt, vocab):
    """(registered model name, its kwargs) for this run's quant_mode."""
    name, phase = QUANT_MODES[opt.quant_mode]
    kwargs = dict(char_vocab_size=vocab.char_vocab_size, word_vocab_size=vocab.word_vocab_size,
                  max_word_l=vocab.max_word_l, char_vec_size=opt.char_vec_size,
                  feature_maps=list(opt.feature_maps), kernels=list(opt.kernels),
                  highway_layers=opt.highway_layers, rnn_size=opt.rnn_size,
                  num_layers=opt.num_layers, dropout=opt.dropout, highway_form=opt.highway_form)
    if name == 'charlm':
        return name, kwargs
    if opt.quant_mode in (6, 7):
        # nbr_mul forced to 1 and W_c = I everywhere, so r = units (decoder r = words).
        kwargs.update(nbr_mul=1.0, out_identity=True, fixed_scale=opt.quant_mode == 7,
                      dense_batchnorm=opt.quant_mode != 7)
    else:
        kwargs.update(nbr_mul=opt.nbr_mul, out_nbr_mul=opt.out_nbr_mul)
    kwargs['phase'] = int(phase)
    return name, kwargs


def make_context(gpu_index):
    gpus = mx.context.num_gpus()
    if gpu_index is None:
        gpu_index = 0 if gpus else -1
    if gpu_index < 0:
        return mx.cpu()
    if gpu_index >= gpus:
        raise SystemExit('error: --gpu_index %d, but %d GPU(s) are visible; use --gpu_index -1 '
                         'for the CPU' % (gpu_index, gpus))
    return mx.gpu(gpu_index)


def enter_stage(net, stage):
    """Put the SPN layers in the stage's phase; (un)freeze W_b and W_c."""
    if spn_layers(net):
        set_phase(net, stage.phase)
        freeze_ternary(net, stage.frozen)


def load_teacher(path, opt, vocab, ctx):
    """The frozen quant_mode 5 teacher: from a run or checkpoint folder of this script (its
    stored sizes), or from a bare .params file (this run's sizes, as the original did)."""
    if os.path.isfile(path):
        kwargs, params = model_spec(argparse.Namespace(**dict(vars(opt), quant_mode=5)),
                                    vocab)[1], path
    else:
        ckpt = path if os.path.isfile(os.path.join(path, 'meta.json')) else latest_checkpoint(path)
        if ckpt is None:
            raise SystemExit('error: --teacher_model %s is neither a .params file nor a run or '
                             'checkpoint folder of train.py' % path)
        meta = read_meta(ckpt)
        if meta.get('model') != 'charlm':
            raise SystemExit('error: the teacher must be a quant_mode 5 model; %s holds a %s '
                             '(quant_mode %s)' % (ckpt, meta.get('model'),
                                                  meta.get('options', {}).get('quant_mode')))
        kwargs, params = dict(meta['model_kwargs']), os.path.join(ckpt, 'model.params')
        for key in ('word_vocab_size', 'char_vocab_size', 'max_word_l'):
            if kwargs[key] != getattr(vocab, key):
                raise SystemExit('error: the teacher %s has %s = %s, this data has %s; train the '
                                 'teacher on the same data' % (ckpt, key, kwargs[key],
                                                               getattr(vocab, key)))
    kwargs['dropout'] = 0.0
    teacher = get_model('charlm', **kwargs)
    try:
        teacher.load_parameters(params, ctx=ctx)
    except (AssertionError, mx.base.MXNetError) as err:
        raise SystemExit('error: cannot load the teacher %s: %s' % (params, err)) from None
    teacher.collect_params().setattr('grad_req', 'null')
    teacher.hybridize()
    return teacher


def _to_nd(array, ctx):
    return nd.array(array, ctx=ctx, dtype='float32')


def _perplexity(mean_nll):
    return math.exp(mean_nll) if mean_nll < 700 else math.inf


def _token_nll(logits, targets):
    return -nd.pick(nd.log_softmax(logits, axis=-1), targets, axis=-1)


def _host_sum(values):
    """Sum of a list of one-element NDArrays in float64: one host sync."""
    return float(nd.concat(*[v.reshape((1,)) for v in values], dim=0).asnumpy()
                 .astype(np.float64).sum()) if values else 0.0


def evaluate(net, batches, ctx, max_batches=0):
    """Perplexity over the split's words (padding masked), state carried across chunks."""
    n = len(batches) if not max_batches else min(max_batches, len(batches))
    h, c = net.begin_state(batches.batch_size, ctx)
    sums, words = [], 0.0
    for i in range(n):
        chars, targets, mask = batches.chunk(i)
        logits, h, c = net(_to_nd(chars, ctx), h, c)
        nll = _token_nll(logits, _to_nd(targets, ctx))
        if mask is not None:
            nll, words = nll * _to_nd(mask, ctx), words + float(mask.sum())
        else:
            words += targets.size
        sums.append(nll.sum())
    return _perplexity(_host_sum(sums) / max(words, 1.0))


class Diverged(RuntimeError):
    pass


def train_epoch(net, batches, trainer, ctx, opt, teacher, say, label):
    """One pass over (at most opt.max_batches of) the training chunks.

    Returns (mean token cross-entropy, tokens/s from the end of the first batch, which builds
    the graph, to the end of the last; all batches if there is only one).
    """
    n = len(batches) if not opt.max_batches else min(opt.max_batches, len(batches))
    grads = [p.grad(ctx) for p in trainable_params(net).values()]
    clip = opt.max_grad_norm * (opt.seq_length if opt.clip_like_original else 1)
    tokens = batches.batch_size * batches.seq_length
    h, c = net.begin_state(batches.batch_size, ctx)
    th, tc = teacher.begin_state(batches.batch_size, ctx) if teacher else (None, None)
    losses, start, warm = [], time.time(), None
    for i in range(n):
        chars, targets, _ = batches.chunk(i)
        x, y = _to_nd(chars, ctx), _to_nd(targets, ctx)
        teacher_logits = None
        if teacher is not None:
            teacher_logits, th, tc = teacher(x, th, tc)
        with autograd.record():
            logits, h, c = net(x, h, c)
            loss = distillation_loss(nd, logits, teacher_logits, y, opt.dist_lambda,
                                     opt.dist_temp).mean()
        loss.backward()
        gluon.utils.clip_global_norm(grads, clip, check_isfinite=False)  # no host sync
        trainer.step(1)
        clip_scales(net)
        h, c = h.detach(), c.detach()
        losses.append(loss if teacher is None else _token_nll(logits, y).mean())
        if i == 0:
            nd.waitall()
            warm = time.time()
        if opt.print_every > 0 and (i + 1) % opt.print_every == 0:
            recent = _host_sum(losses[-opt.print_every:]) / opt.print_every  # sync point
            if not math.isfinite(recent):
                raise Diverged('%s batch %d' % (label, i + 1))
            elapsed = time.time() - warm
            speed = ', %.0f tokens/s' % (i * tokens / elapsed) if i and elapsed > 0 else ''
            say('[%s batch %d/%d] train ppl %.2f%s' % (label, i + 1, n, _perplexity(recent), speed))
    nd.waitall()
    end = time.time()
    mean = _host_sum(losses) / n
    if not math.isfinite(mean):
        raise Diverged('%s (mean loss %s)' % (label, mean))
    speed = (n - 1) * tokens / (end - warm) if n > 1 else tokens / (end - start)
    return mean, speed


def count_ops(net):
    """Multiplications, additions and bits per time step (one word, batch 1), or None if the
    counting module is not there. Layers it cannot count are listed in 'uncounted'."""
    try:
        from strassen_gluon.count import count_model
    except ImportError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        result = count_model(net, inputs=net.example_inputs(ctx=_net_context(net)))
    out = dict(result['total'])
    out['excluding_decoder'] = result.get('total_excluding_fc_head')
    uncounted = [row['name'] for row in result['layers'] if row.get('uncounted_ops')]
    if uncounted:
        out['uncounted'] = uncounted
    return out


def _net_context(net):
    return next(iter(net.collect_params().values())).list_ctx()[0]


def new_run_dir(opt):
    name = opt.run_name or '%s-qm%d' % (time.strftime('%Y%m%d-%H%M%S'), opt.quant_mode)
    path, k = os.path.join(opt.log_dir, name), 1
    while os.path.exists(path):
        k += 1
        path = os.path.join(opt.log_dir, '%s-%d' % (name, k))
    os.makedirs(path)
    return path


def _epoch_seed(seed, stage_index, epoch):
    # Dropout masks depend only on the position in the run, so a resumed run draws the same.
    return int(np.random.SeedSequence([seed, stage_index, epoch]).generate_state(1)[0])


def main(argv=None):
    """Run (or resume) one training run; returns the summary dict (also in summary.json)."""
    opt = parse_args(argv)
    resume_meta = None
    if opt.resume is not None:
        opt, resume_meta = _resume_options(opt)
        if resume_meta is None:
            return None
    say = (lambda *a: None) if opt.quiet else (lambda *a: print(*a, flush=True))
    ctx = make_context(opt.gpu_index)
    try:
        corpus = load_corpus(opt.data_dir, opt.max_word_l, opt.n_words, opt.n_chars, opt.EOS)
        vocab = corpus.vocab
        data = {split: Batches(*corpus.splits[split], opt.batch_size, opt.seq_length,
                               keep_all=split == 'test') for split in corpus.splits}
    except (OSError, ValueError) as err:
        raise SystemExit('error: %s' % err) from None
    say('data %s: %d words, %d characters, max_word_l %d; batches train %d, valid %d, test %d'
        % (opt.data_dir, vocab.word_vocab_size, vocab.char_vocab_size, vocab.max_word_l,
           len(data['train']), len(data['valid']), len(data['test'])))
    for what, epochs in (('epochs_pre', opt.epochs_pre), ('epochs_cont', opt.epochs_cont)):
        if epochs and opt.quant_mode not in STAGED_MODES:
            say('note: --%s applies to quant_mode %s only; ignored' % (what, STAGED_MODES))
    use_teacher = opt.teacher_model is not None and opt.quant_mode in STAGED_MODES
    if opt.teacher_model is not None and not use_teacher:
        say('note: distillation applies to quant_mode %s only; --teacher_model ignored'
            % (STAGED_MODES,))

    name, kwargs = model_spec(opt, vocab)
    stages = plan_stages(opt)
    mx.random.seed(opt.seed)
    np.random.seed(opt.seed)
    net = get_model(name, **kwargs)
    net.initialize(mx.init.Xavier(), ctx=ctx)
    net.hybridize()
    teacher = load_teacher(opt.teacher_model, opt, vocab, ctx) if use_teacher else None

    mid_stage = False  # resuming inside a stage: its lr, val ppl and optimizer come back too
    if resume_meta is None:
        run_dir = new_run_dir(opt)
        first_stage, first_epoch, lr, prev_ppl, tested = 0, 0, None, math.inf, False
        write_json_atomic(os.path.join(run_dir, CONFIG_NAME), dict(
            options=vars(opt), argv=sys.argv if argv is None else list(argv), model=name,
            model_kwargs=kwargs, git=git_revision(HERE), files=corpus.files,
            vocab=_vocab_info(vocab)))
    else:
        run_dir = opt.resume
        ckpt = latest_checkpoint(run_dir)
        net.load_parameters(os.path.join(ckpt, 'model.params'), ctx=ctx)
        first_stage, first_epoch = resume_meta['stage_index'], resume_meta['epochs_done']
        lr, prev_ppl, tested = resume_meta['lr'], resume_meta['prev_val_ppl'], \
            resume_meta.get('tested', False)
        mid_stage = not (first_epoch >= stages[first_stage].epochs and tested)
        if not mid_stage:
            first_stage += 1
        say('resuming %s at stage %d epoch %d' % (run_dir, first_stage + 1,
                                                  first_epoch + 1 if mid_stage else 1))
    say('run folder %s' % run_dir)
    log = os.path.join(run_dir, LOG_NAME)
    meta_base = dict(options=vars(opt), model=name, model_kwargs=kwargs, vocab=_vocab_info(vocab),
                     git=git_revision(HERE))
    started, test_ppl, counts = time.time(), {}, None

    try:
        for si in range(first_stage, len(stages)):
            stage = stages[si]
            resuming = mid_stage and si == first_stage
            enter_stage(net, stage)
            if not resuming:
                lr, prev_ppl, first_epoch, tested = stage.lr, math.inf, 0, False
            trainer = make_trainer(net, lr, momentum=0.0, wd=0.0)
            if resuming:
                load_trainer_states(latest_checkpoint(run_dir), [trainer])
            counts = count_ops(net)
            if counts is not None:
                append_jsonl(log, dict(event='count', phase=stage.name, per='time step',
                                       **counts))
            say('stage %s: %s, %d epochs from lr %g%s' % (
                stage.name, 'full-precision model' if stage.phase is None else
                'SPN phase %s' % Phase(stage.phase).name.lower(), stage.epochs, lr,
                ', W_b and W_c frozen' if stage.frozen else ''))
            for epoch in range(first_epoch, stage.epochs):
                mx.random.seed(_epoch_seed(opt.seed, si, epoch))
                label = '%s epoch %d' % (stage.name, epoch + 1)
                t0 = time.time()
                train_loss, speed = train_epoch(net, data['train'], trainer, ctx, opt, teacher,
                                                say, label)
                val_ppl = evaluate(net, data['valid'], ctx, opt.max_eval_batches)
                record = dict(event='epoch', phase=stage.name, epoch=epoch + 1, lr=lr,
                              train_ppl=_perplexity(train_loss), val_ppl=val_ppl,
                              seconds=time.time() - t0, tokens_per_s=speed)
                append_jsonl(log, record)
                say('[%s] lr %g, train ppl %.2f, valid ppl %.2f, %.1f s, %.0f tokens/s'
                    % (label, lr, record['train_ppl'], val_ppl, record['seconds'], speed))
                if val_ppl > prev_ppl - stage.decay_when:
                    lr *= opt.learning_rate_decay
                    trainer.set_learning_rate(lr)
                prev_ppl = val_ppl
                save_checkpoint(run_dir, '%d-%s-%03d' % (si, stage.name, epoch + 1), net,
                                [trainer], dict(meta_base, stage_index=si, stage=stage.name,
                                                epochs_done=epoch + 1, lr=lr,
                                                prev_val_ppl=prev_ppl, val_ppl=val_ppl,
                                                tested=False))
            if not (resuming and tested):
                test_ppl[stage.name] = evaluate(net, data['test'], ctx, opt.max_eval_batches)
                append_jsonl(log, dict(event='test', phase=stage.name,
                                       test_ppl=test_ppl[stage.name]))
                say('[%s] test ppl %.2f' % (stage.name, test_ppl[stage.name]))
                _mark_tested(run_dir)
    except Diverged as err:
        append_jsonl(log, dict(event='diverged', where=str(err)))
        raise SystemExit('error: the training loss became NaN or infinite (%s); stopped. The '
                         'last checkpoint in %s is from before it. Try a lower --learning_rate.'
                         % (err, run_dir)) from None

    summary = dict(meta_base, run_dir=run_dir, argv=sys.argv if argv is None else list(argv),
                   test_ppl=test_ppl.get(stages[-1].name), test_ppl_by_phase=test_ppl,
                   ops_per_time_step=counts, seconds=time.time() - started)
    write_json_atomic(os.path.join(run_dir, SUMMARY_NAME), summary)
    if counts is not None:
        say('per time step: %d multiplications, %d additions' % (counts['mults'], counts['adds']))
    return summary


def _vocab_info(vocab):
    return dict(word_vocab_size=vocab.word_vocab_size, char_vocab_size=vocab.char_vocab_size,
                max_word_l=vocab.max_word_l)


def _mark_tested(run_dir):
    """Record in the latest checkpoint that its stage's test perplexity is logged."""
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        meta = read_meta(ckpt)
        meta['tested'] = True
        write_json_atomic(os.path.join(ckpt, 'meta.json'), meta)


def _resume_options(cli):
    """The stored options of the run in cli.resume (runtime options from the command line) and
    its last checkpoint's meta; (options, None) if the run is already complete."""
    run_dir = os.path.abspath(cli.resume)
    if os.path.isfile(os.path.join(run_dir, SUMMARY_NAME)):
        if not cli.quiet:
            print('%s is complete (summary.json exists); nothing to resume' % run_dir)
        return cli, None
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise SystemExit('error: no checkpoint in %s to resume from' % run_dir)
    meta = read_meta(ckpt)
    opt = argparse.Namespace(**meta['options'])
    for key in RUNTIME_OPTIONS:
        setattr(opt, key, getattr(cli, key))
    opt.resume = run_dir
    return opt, meta


if __name__ == '__main__':
    main()
