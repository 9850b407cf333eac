"""Character-aware Strassen LM: PTB loader, models, quant modes, stages, distillation, resume.

Everything runs on a tiny corpus written in Kim's PTB format and tiny model sizes.
"""
import json
import math
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, nd

from langmod import data as ptb
from langmod import lm, train
from strassen_gluon import Phase
from strassen_gluon.errors import EXIT_DIVERGED, EXIT_USAGE, DataError, Diverged, Interrupted, UsageError
from strassen_gluon.train import loop
from strassen_gluon.train.stages import enter_stage, make_trainer, trainable_params
from strassen_gluon.layers import SPNConv2D, SPNDense, SPNLSTM, spn_layers
from strassen_gluon.models import get_model, list_models

WORDS = ('the a cat dog sat on mat ran far away N <unk> big small red blue house tree '
         'extraordinarily').split()
TINY = ['--rnn_size', '8', '--feature_maps', '3', '4', '--kernels', '1', '2',
        '--highway_layers', '1', '--num_layers', '2', '--char_vec_size', '5',
        '--batch_size', '3', '--seq_length', '4', '--out_nbr_mul', '6', '--print_every', '0',
        '--gpu_index', '-1', '--quiet']


def write_corpus(folder, names=('ptb.train.txt', 'ptb.valid.txt', 'ptb.test.txt'),
                 lines=(120, 25, 23), seed=0):
    rng = np.random.RandomState(seed)
    os.makedirs(folder, exist_ok=True)
    for name, n in zip(names, lines):
        with open(os.path.join(folder, name), 'w') as f:
            for _ in range(n):
                f.write(' ' + ' '.join(rng.choice(WORDS, rng.randint(2, 8))) + ' \n')
    return str(folder)


@pytest.fixture(scope='module')
def corpus_dir(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp('ptb'))


def run(args, corpus_dir, log_dir, **kw):
    """The command line's configuration, trained through the API: returns the summary."""
    argv = TINY + ['--data_dir', corpus_dir, '--log_dir', str(log_dir)] + list(args)
    config, explicit = train.parse_args(argv)
    return lm.train(config, explicit)


def read_log(run_dir):
    with open(os.path.join(run_dir, 'log.jsonl')) as f:
        return [json.loads(line) for line in f]


def epochs_of(run_dir):
    return [(r['stage'], r['epoch']) for r in read_log(run_dir)]


# ------------------------------------------------------------------------------ loader

def test_loader_follows_batchloaderunk(tmp_path):
    folder = tmp_path / 'd'
    folder.mkdir()
    (folder / 'ptb.train.txt').write_text(' the cat <unk> sat\n a {dog} \n')
    (folder / 'ptb.valid.txt').write_text(' the dog\n')
    (folder / 'ptb.test.txt').write_text(' cat cat\n')
    corpus = ptb.load_corpus(str(folder), max_word_l=65)
    vocab = corpus.vocab
    words, chars = corpus.splits['train']
    decoded = [vocab.idx2word[i] for i in words]
    # <unk> -> '|' (id 0), '{' '}' removed, '+' ends every line as a word of its own.
    assert decoded == ['the', 'cat', '|', 'sat', '+', 'a', 'dog', '+']
    assert vocab.idx2char[:4] == [' ', '{', '}', '|']
    # The longest word is 'the'/'cat'/'sat'/'dog' (3 letters): max_word_l = 3 + 2.
    assert vocab.max_word_l == 5 and chars.shape == (8, 5)
    the = [1] + [vocab.char2idx[c] for c in 'the'] + [2]
    assert chars[0].tolist() == the
    assert chars[2].tolist() == [1, 3, 2, 0, 0]          # '|': start, unk char, end, padding
    assert chars[4].tolist() == [1, vocab.char2idx['+'], 2, 0, 0]
    # Words ordered by count over all splits ('cat' 3x, 'the', 'dog', '+' ... ); '|' is 0.
    assert vocab.idx2word[0] == '|' and vocab.idx2word[1] in ('cat', '+')


def test_loader_cuts_long_words_and_caps_vocab(tmp_path):
    folder = write_corpus(tmp_path / 'd')
    corpus = ptb.load_corpus(folder, max_word_l=6, n_words=5, n_chars=8)
    vocab = corpus.vocab
    assert vocab.max_word_l == 6 and vocab.word_vocab_size == 5 and vocab.char_vocab_size == 8
    words, chars = corpus.splits['train']
    assert words.max() < 5 and chars.max() < 8
    long_rows = chars[(chars != 0).sum(axis=1) == 6]
    assert len(long_rows) and (long_rows[:, -1] == 2).all()   # cut, last slot = end


def test_batches_in_order_and_targets(corpus_dir):
    corpus = ptb.load_corpus(corpus_dir)
    words, chars = corpus.splits['train']
    b = ptb.Batches(words, chars, batch_size=3, seq_length=4)
    cols = len(b) * 4
    rows = words[:3 * cols].reshape(3, cols)
    first_chars, first_targets, mask = b.chunk(0)
    assert mask is None and first_chars.shape == (4, 3, corpus.vocab.max_word_l)
    # Chunk 0 holds the first 4 words of each row (the original started at chunk 1).
    np.testing.assert_array_equal(first_chars[:, 0], chars[:4])
    np.testing.assert_array_equal(first_targets[:, 0], words[1:5])
    np.testing.assert_array_equal(first_targets[:, 1], rows[1, 1:5])
    last_targets = b.chunk(len(b) - 1)[1]
    assert last_targets[-1, -1] == words[0]              # the last target wraps around
    with pytest.raises(IndexError):
        b.chunk(len(b))


def test_test_split_scores_every_word_once(corpus_dir):
    corpus = ptb.load_corpus(corpus_dir)
    words, chars = corpus.splits['test']
    b = ptb.Batches(words, chars, batch_size=3, seq_length=4, keep_all=True)
    masks = np.concatenate([b.chunk(i)[2] for i in range(len(b))])
    assert masks.sum() == len(words)
    stream = np.concatenate([b.chunk(i)[1] for i in range(len(b))]).T.reshape(-1)
    np.testing.assert_array_equal(stream[:len(words) - 1], words[1:])


def test_loader_accepts_kim_names_and_prefers_ptb_names(tmp_path):
    folder = write_corpus(tmp_path / 'kim', names=('train.txt', 'valid.txt', 'test.txt'))
    files = ptb.split_files(folder)
    assert os.path.basename(files['train']) == 'train.txt'
    write_corpus(tmp_path / 'kim', lines=(30, 5, 5), seed=1)
    assert os.path.basename(ptb.split_files(folder)['valid']) == 'ptb.valid.txt'


def test_loader_names_missing_and_empty_files(tmp_path, capsys):
    folder = write_corpus(tmp_path / 'd')
    os.remove(os.path.join(folder, 'ptb.valid.txt'))
    with pytest.raises(FileNotFoundError) as err:
        ptb.split_files(folder)
    assert 'missing in %s: ptb.valid.txt or valid.txt.' % os.path.abspath(folder) \
        in str(err.value)
    open(os.path.join(folder, 'ptb.valid.txt'), 'w').close()
    with pytest.raises(ValueError, match='ptb.valid.txt.*empty'):
        ptb.split_files(folder)
    # The library raises a DataError; the command line turns it into one line and status 1.
    with pytest.raises(DataError, match='ptb.valid.txt'):
        run([], folder, tmp_path / 'logs')
    assert train.main(TINY + ['--data_dir', folder, '--log_dir', str(tmp_path / 'logs')]) == 1
    assert 'ptb.valid.txt' in capsys.readouterr().err


def test_file_that_is_not_utf8_is_named_with_the_line(tmp_path, capsys):
    folder = write_corpus(tmp_path / 'd')
    path = os.path.join(folder, 'ptb.train.txt')
    with open(path, 'ab') as f:
        f.write(b' caf\xe9 au lait\n')
    lines = open(path, 'rb').read().count(b'\n')
    with pytest.raises(ValueError, match='ptb.train.txt is not UTF-8 text: byte 0xe9 on line %d'
                       % lines):
        ptb.load_corpus(folder)
    assert train.main(TINY + ['--data_dir', folder, '--log_dir', str(tmp_path / 'logs')]) == 1
    err = capsys.readouterr().err
    assert path in err and 'Traceback' not in err


# ------------------------------------------------------------------------------ command line

def test_options_and_defaults_of_the_original():
    opt = train.build_parser().parse_args([])
    original = dict(rnn_size=650, highway_layers=2, word_vec_size=650, char_vec_size=15,
                    feature_maps=[50, 100, 150, 200, 200, 200, 200], kernels=[1, 2, 3, 4, 5, 6, 7],
                    num_layers=2, dropout=0.5, nbr_mul=1.0, out_nbr_mul=2000, quant_mode=0,
                    learning_rate=2, learning_rate_decay=0.5, decay_when=1, seq_length=35,
                    batch_size=20, max_epochs=25, max_grad_norm=5, max_word_l=65,
                    epochs_cont=0, epochs_pre=0, learning_rate_cont=0.01,
                    learning_rate_pre=0.01, n_words=30000, n_chars=100, print_every=50,
                    EOS='+', teacher_model=None, dist_lambda=0.5, dist_temp=1.0)
    for key, value in original.items():
        assert getattr(opt, key) == value, key
    assert opt.seed == 123 and opt.devices is None and opt.resume is None
    resolved, explicit = train.parse_args([])
    assert explicit == set() and resolved == lm.LMConfig()
    assert lm.DEFAULT_DATA_DIR == os.path.join(os.path.dirname(train.__file__), 'data', 'ptb')
    assert resolved.log_dir == os.path.join(os.path.dirname(train.__file__), 'logs')
    # Every quant_mode has one meaning, in one table.
    assert sorted(lm.QUANT_MODES) == list(range(8)) and lm.STAGED_MODES == (2, 3, 4, 6, 7)


def test_script_runs_from_its_folder(corpus_dir, tmp_path):
    argv = [sys.executable, 'train.py', '--data_dir', corpus_dir, '--log_dir', str(tmp_path),
            '--max_epochs', '1', '--max_batches', '2', '--max_eval_batches', '2', '--quant_mode',
            '5'] + TINY
    out = subprocess.run(argv, cwd=os.path.dirname(train.__file__), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (run_dir,) = os.listdir(tmp_path)
    (epoch,) = read_log(os.path.join(tmp_path, run_dir))
    assert set(epoch) >= {'stage', 'epoch', 'lr', 'train_ppl', 'val_ppl', 'test_ppl', 'seconds',
                          'eval_seconds', 'tokens_per_s'}
    summary = json.load(open(os.path.join(tmp_path, run_dir, 'summary.json')))
    assert summary['task'] == 'langmod' and summary['metric_names'] == ['test_ppl', 'val_ppl']
    # The run's own time: training and evaluation (valid and test sets) summed over its epochs.
    assert summary['train_seconds'] == epoch['seconds'] > 0
    assert summary['eval_seconds'] == epoch['eval_seconds'] > 0


# ------------------------------------------------------------------------------ quant modes

def _opt(corpus_dir, mode, *extra):
    return train.parse_args(TINY + ['--data_dir', corpus_dir, '--quant_mode', str(mode)]
                            + list(extra))[0]


def _build(corpus_dir, mode, *extra):
    opt = _opt(corpus_dir, mode, *extra)
    corpus = ptb.load_corpus(corpus_dir)
    name, kwargs = train.model_spec(opt, corpus.vocab)
    mx.random.seed(1)
    net = get_model(name, **kwargs)
    net.initialize(mx.init.Xavier())
    net.hybridize()
    batches = ptb.Batches(*corpus.splits['train'], opt.batch_size, opt.seq_length)
    return opt, net, batches


def _expected_trainable(net, mode):
    """(parameters that must train, parameters that must not) for a quant mode."""
    train_, frozen = [], []
    for layer in spn_layers(net):
        if mode == 0:
            train_ += layer.dense_params()
            frozen += layer.ternary_params() + layer.scale_params()
            continue
        frozen += layer.dense_params()
        train_ += layer.ternary_params()
        (frozen if mode == 7 else train_).extend(layer.scale_params())
    return train_, frozen


def _is_char_conv(layer):
    return isinstance(layer, SPNConv2D)


@pytest.mark.parametrize('mode', range(8))
def test_quant_mode_forward_backward(corpus_dir, mode):
    opt, net, batches = _build(corpus_dir, mode)
    stage = lm.plan_stages(opt)[-1]
    enter_stage(net, stage)
    if mode == 5:
        assert not spn_layers(net)
    else:
        assert {layer.phase for layer in spn_layers(net)} == {stage.phase}
    kinds = {type(layer) for layer in spn_layers(net)}
    if mode != 5:
        assert kinds == {SPNConv2D, SPNDense, SPNLSTM}
        for layer in spn_layers(net):
            # The char CNN always has W_c = I; modes 6 and 7 have it everywhere.
            assert layer.identity_out == (mode in (6, 7) or _is_char_conv(layer))
            assert layer.fixed_scale == (mode == 7)
            if layer.identity_out:
                assert layer.r == getattr(layer, 'channels', getattr(layer, 'units', getattr(
                    layer, 'hidden_size', None)))
    chars, targets, _ = batches.chunk(0)
    x, y = nd.array(chars), nd.array(targets)
    h, c = net.begin_state(opt.batch_size)
    params = trainable_params(net)
    with autograd.record():
        logits, _, _ = net(x, h, c)
        loss = -nd.pick(nd.log_softmax(logits), y).mean()
    loss.backward()
    assert logits.shape == (opt.seq_length, opt.batch_size, net.config['word_vocab_size'])
    assert math.isfinite(loss.asscalar())
    should_train, must_not = _expected_trainable(net, mode)
    names = {id(p) for p in params.values()}
    for p in should_train:
        assert id(p) in names, p.name
    for p in must_not:
        assert p.grad_req == 'null' and id(p) not in names, p.name
    for name, p in params.items():
        assert float(p.grad().norm().asscalar()) > 0, name
    frozen_before = {p.name: p.data().copy() for p in must_not}
    trainer = make_trainer(net, 0.5, momentum=0.0, wd=0.0)
    trainer.step(1)
    for p in must_not:
        np.testing.assert_array_equal(p.data().asnumpy(), frozen_before[p.name].asnumpy())
    for layer in spn_layers(net):
        if mode == 7:
            for s in layer.scale_params():
                assert (s.data().asnumpy() == 1).all()


def test_spn_modes_quantize_what_they_should(corpus_dir):
    for mode, ternary_b, ternary_c in ((1, False, False), (2, True, True), (3, True, False),
                                       (4, False, True), (6, True, False), (7, True, False)):
        opt = _opt(corpus_dir, mode)
        phase = lm.plan_stages(opt)[-1].phase
        assert (phase.ternary_b, phase.ternary_c) == (ternary_b, ternary_c), mode


def test_models_are_registered():
    assert {'charlm', 'st_charlm'} <= set(list_models())
    with pytest.raises(ValueError, match='fixed_scale'):
        get_model('st_charlm', char_vocab_size=9, word_vocab_size=9, max_word_l=5,
                  fixed_scale=True)


# ------------------------------------------------------------------------------ stages

def test_stages_pre_main_cont(corpus_dir):
    for mode in (2, 3, 4, 6, 7):   # 7 pre-trains too (the original skipped it)
        opt = _opt(corpus_dir, mode, '--epochs_pre', '1', '--epochs_cont', '1',
                   '--learning_rate_pre', '0.3', '--learning_rate_cont', '0.05')
        stages = lm.plan_stages(opt)
        assert [s.name for s in stages] == ['pre', 'main', 'cont']
        assert [s.lr for s in stages] == [0.3, opt.learning_rate, 0.05]
        assert stages[2].decay_when == 0 and stages[2].frozen and not stages[1].frozen
        assert stages[0].phase == Phase.FULL and stages[1].phase == stages[2].phase != Phase.FULL
    for mode in (0, 1, 5):
        opt = _opt(corpus_dir, mode, '--epochs_pre', '1', '--epochs_cont', '1')
        assert [s.name for s in lm.plan_stages(opt)] == ['main']


def test_enter_stage_sets_phase_and_freezing(corpus_dir):
    opt, net, _ = _build(corpus_dir, 6, '--epochs_pre', '1', '--epochs_cont', '1')
    pre, main, cont = lm.plan_stages(opt)
    for stage in (pre, main, cont):
        enter_stage(net, stage)
        for layer in spn_layers(net):
            assert layer.phase == stage.phase and layer.frozen == stage.frozen
            wb = layer.ternary_params()
            assert all(p.grad_req == ('null' if stage.frozen else 'write') for p in wb)
    # Mode 6 after pre-training quantizes W_b (the original stayed in full precision).
    assert main.phase == Phase.TERNARY_B


def test_run_through_all_stages(corpus_dir, tmp_path):
    summary = run(['--quant_mode', '2', '--epochs_pre', '1', '--max_epochs', '3',
                   '--epochs_cont', '1', '--max_batches', '3', '--max_eval_batches', '2',
                   '--learning_rate', '0.5', '--decay_when', '1e9'], corpus_dir, tmp_path)
    records = read_log(summary['run_dir'])
    epochs = [(r['stage'], r['epoch'], r['lr']) for r in records]
    # decay_when huge: lr halves after every epoch but the first of a stage (no previous val ppl).
    assert epochs == [('pre', 0, 0.01), ('main', 0, 0.5), ('main', 1, 0.5), ('main', 2, 0.25),
                      ('cont', 0, 0.01)]
    # The test perplexity is measured once at the end of each stage.
    assert [r['stage'] for r in records if 'test_ppl' in r] == ['pre', 'main', 'cont']
    assert summary['metrics']['test_ppl'] == summary['stages']['cont']['final']['test_ppl'] > 1
    assert summary['cost']['mults'] > 0 and summary['cost']['per'] == 'time step'
    assert os.path.isfile(os.path.join(summary['run_dir'], 'config.json'))


def test_nan_loss_stops_with_a_message(corpus_dir, tmp_path, monkeypatch):
    real = lm.distillation_loss
    monkeypatch.setattr(lm, 'distillation_loss',
                        lambda F, *a, **kw: real(F, *a, **kw) * float('nan'))
    with pytest.raises(Diverged, match='became nan'):
        run(['--quant_mode', '5', '--max_epochs', '2', '--max_batches', '3'], corpus_dir,
            tmp_path)
    (run_dir,) = os.listdir(tmp_path)
    # No epoch was logged and no checkpoint written: the run folder holds its configuration.
    assert os.listdir(os.path.join(tmp_path, run_dir)) == ['config.json']
    assert train.main(TINY + ['--data_dir', corpus_dir, '--log_dir', str(tmp_path / 'cli'),
                              '--quant_mode', '5', '--max_batches', '3']) == EXIT_DIVERGED
    assert train.main(['--learning_rate', 'nan']) == EXIT_USAGE   # checked before any data


# ------------------------------------------------------------------------------ distillation

def test_distillation_changes_training(corpus_dir, tmp_path):
    teacher = run(['--quant_mode', '5', '--max_epochs', '1', '--max_batches', '4',
                   '--max_eval_batches', '2'], corpus_dir, tmp_path / 'teacher')
    common = ['--quant_mode', '2', '--max_epochs', '1', '--max_batches', '4',
              '--max_eval_batches', '2', '--learning_rate', '0.5']
    plain = run(common, corpus_dir, tmp_path / 'plain')
    distilled = run(common + ['--teacher_model', teacher['run_dir'], '--dist_lambda', '0.9'],
                    corpus_dir, tmp_path / 'distilled')
    val = [read_log(s['run_dir'])[0]['val_ppl'] for s in (plain, distilled)]
    assert val[0] != val[1]
    # A student run is no teacher.
    with pytest.raises(UsageError, match='quant_mode 5'):
        run(common + ['--teacher_model', plain['run_dir']], corpus_dir, tmp_path / 'bad')


# ------------------------------------------------------------------------------ resume

def test_resume_continues_where_it_stopped(corpus_dir, tmp_path, monkeypatch):
    args = ['--quant_mode', '2', '--epochs_pre', '1', '--max_epochs', '2', '--max_batches', '3',
            '--max_eval_batches', '2', '--learning_rate', '0.5', '--run_name', 'r']
    whole = run(args, corpus_dir, tmp_path / 'whole')

    saves = []
    real_save = loop.save_checkpoint

    def save_then_die(*a, **kw):
        if len(saves) == 2:            # Ctrl-C before the checkpoint of main epoch 2
            raise KeyboardInterrupt
        saves.append(a[1])
        return real_save(*a, **kw)
    monkeypatch.setattr(loop, 'save_checkpoint', save_then_die)
    with pytest.raises(Interrupted, match='--resume'):
        run(args, corpus_dir, tmp_path / 'cut')
    monkeypatch.setattr(loop, 'save_checkpoint', real_save)
    run_dir = str(tmp_path / 'cut' / 'r')
    assert not os.path.exists(os.path.join(run_dir, 'summary.json'))
    # main epoch 2 was logged before the interruption: it is dropped and trained again.
    config, explicit = train.parse_args(['--resume', run_dir, '--quiet', '--gpu_index', '-1'])
    resumed = lm.train(config, explicit)
    assert epochs_of(run_dir) == [('pre', 0), ('main', 0), ('main', 1)]
    assert resumed['metrics']['test_ppl'] == whole['metrics']['test_ppl']
    # A finished run resumed again trains nothing and keeps its log.
    again = lm.train(*train.parse_args(['--resume', run_dir, '--quiet', '--gpu_index', '-1']))
    assert again['metrics'] == resumed['metrics'] and len(read_log(run_dir)) == 3


# ------------------------------------------------------------------------------ real PTB

REAL_PTB = os.environ.get('STRASSEN_PTB_DIR')
needs_ptb = pytest.mark.skipif(not REAL_PTB, reason='set STRASSEN_PTB_DIR to the real PTB folder')


@needs_ptb
def test_real_ptb_counts():
    corpus = ptb.load_corpus(REAL_PTB)
    # Tokens + one end-of-sentence word per line (shared/data/README.md), Kim's vocabulary.
    assert {s: len(w) for s, (w, _) in corpus.splits.items()} == \
        {'train': 929589, 'valid': 73760, 'test': 82430}
    assert corpus.vocab.word_vocab_size == 10000 and corpus.vocab.char_vocab_size == 51
    assert corpus.vocab.max_word_l == 21
    assert [len(ptb.Batches(*corpus.splits[s], 20, 35, keep_all=s == 'test'))
            for s in ptb.SPLITS] == [1327, 105, 118]


@needs_ptb
def test_real_ptb_tiny_model_learns(tmp_path):
    summary = run(['--quant_mode', '2', '--max_epochs', '1', '--max_batches', '60',
                   '--max_eval_batches', '3', '--batch_size', '20',
                   '--rnn_size', '32', '--out_nbr_mul', '64'], REAL_PTB, tmp_path)
    epoch = read_log(summary['run_dir'])[0]
    assert epoch['val_ppl'] < 10000 / 2   # well below a uniform guess over 10k words


def test_char_cnn_max_sends_the_gradient_to_the_first_maximum_as_max_pooling_does():
    """Padded positions of a short word give equal convolution outputs: the max over positions
    must pass its gradient to one of them (the original's max pooling), not to each."""
    from strassen_gluon.models.charlm import CharCNN
    mx.random.seed(0)
    conv = mx.gluon.nn.Conv2D(4, (1, 2), in_channels=3)
    cnn = CharCNN([conv])
    cnn.initialize()
    x = nd.random.normal(shape=(5, 3, 1, 9))
    x[:, :, :, 4:] = 0.5   # padding: every window from position 4 on is the same
    weights = nd.random.normal(shape=(5, 4))
    grads = []
    for pool in (None, 'pooling'):
        with autograd.record():
            if pool:
                y = nd.Pooling(nd.tanh(conv(x)), pool_type='max', global_pool=True,
                               kernel=(1, 1)).flatten()
            else:
                y = cnn(x)
            loss = (y * weights).sum()
        loss.backward()
        grads.append(conv.weight.grad().asnumpy().copy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-7)
