"""ImageNet ResNet-18 / ST-ResNet-18, RecordIO data and the training command, on tiny data.

The command's tests run it end to end on small generated RecordIO files on the CPU, including a
real dist_sync job started by MXNet's launcher (two workers, one server).
"""
import os
import signal
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

from strassen_gluon import imagenet
from strassen_gluon.config import Phase
from strassen_gluon.errors import EXIT_USAGE
from strassen_gluon.data.imagenet import (RecordBatches, batches_per_epoch, count_records,
                                          write_tiny_recordio)
from strassen_gluon.layers import SPNBlock, SPNConv2D, set_phase, spn_layers
from strassen_gluon.models import get_model
from strassen_gluon.train.checkpoint import latest_checkpoint, read_meta
from strassen_gluon.train.logs import read_jsonl
from strassen_gluon.train.schedule import learning_rate

TINY = ['--classes', '4', '--image_size', '32', '--batch_size', '4', '--max_batches', '2',
        '--num_workers', '1', '--quiet', '--gpu_index', '-1']


def _blocks(net, kind):
    found = []
    net.apply(lambda b: found.append(b) if isinstance(b, kind) else None)
    return found


def _size(net, trainable_only):
    return sum(p.data().size for p in net.collect_params().values()
               if not trainable_only or p.grad_req != 'null')


def _tiny_data(tmp_path, train_images=32, eval_images=8):
    train_rec, _ = write_tiny_recordio(str(tmp_path / 'train'), train_images, classes=4, seed=1)
    val_rec, _ = write_tiny_recordio(str(tmp_path / 'val'), eval_images, classes=4, seed=2)
    return ['--train_rec', train_rec, '--val_rec', val_rec]


# ------------------------------------------------------------------------------- models

def test_resnet18_is_gluoncv_resnet18_v1():
    from gluoncv.model_zoo import get_model as gluoncv_model
    ours, ref = get_model('resnet18'), gluoncv_model('resnet18_v1')
    ours.initialize()
    ref.initialize()
    x = mx.nd.random.uniform(shape=(2, 3, 64, 64))
    ref(x)  # gluoncv's batch norms learn their sizes from the first input
    assert _size(ours, True) == _size(ref, True) == 11689512  # "11.69M"
    assert _size(ours, False) == _size(ref, False)  # running statistics too
    # Same parameters in the same order: copy gluoncv's and get the same outputs.
    ours_params, ref_params = list(ours.collect_params().values()), \
        list(ref.collect_params().values())
    assert [p.shape for p in ours_params] == [p.shape for p in ref_params]
    for mine, theirs in zip(ours_params, ref_params):
        mine.set_data(theirs.data())
    np.testing.assert_allclose(ours(x).asnumpy(), ref(x).asnumpy(), rtol=1e-4, atol=1e-5)


def test_st_resnet18_every_convolution_is_an_spn():
    nbr_mul = {64: 0.5, 128: 1.0, 256: 2.0, 512: 4.0}  # stage widths -> the list below
    net = get_model('st_resnet18', nbr_mul=[1, 0.5, 1, 2, 4], out_patch=2, groups=4,
                    classes=10)
    assert not _blocks(net, nn.Conv2D)
    spns = spn_layers(net)
    assert len(spns) == 20 and all(isinstance(s, SPNConv2D) for s in spns)  # 1 + 16 + 3
    stem = net.features[0]
    assert (stem.kernel, stem.strides, stem.in_channels, stem.channels) == ((7, 7), (2, 2), 3, 64)
    assert (stem.r, stem.out_patch, stem.groups) == (64, 2, 1)  # 4 does not divide 3 channels
    shortcuts = [s for s in spns if s.kernel == (1, 1)]
    assert len(shortcuts) == 3
    assert all(s.out_patch == 1 and s.strides == (2, 2) for s in shortcuts)
    for layer in spns[1:]:
        assert layer.groups == 4
        assert layer.r == int(nbr_mul[layer.channels] * layer.channels)
    assert all(s.out_patch == 2 for s in spns[1:] if s.kernel == (3, 3))
    assert not isinstance(net.output, SPNBlock) and net.output.weight.shape[0] == 10  # FC stays dense
    net.initialize()
    assert net(mx.nd.random.uniform(shape=(2, 3, 64, 64))).shape == (2, 10)


def test_st_resnet18_in_dense_phase_is_resnet18():
    """Same topology: with resnet18's weights in the SPN layers' dense weights, the outputs of
    ST-ResNet-18 in Phase.DENSE are ResNet-18's."""
    st, ref = get_model('st_resnet18', classes=5), get_model('resnet18', classes=5)
    st.initialize()
    ref.initialize(mx.init.Xavier(magnitude=2))
    set_phase(st, Phase.DENSE)
    spns, convs = spn_layers(st), _blocks(ref, nn.Conv2D)
    assert len(spns) == len(convs)
    for spn, conv in zip(spns, convs):
        spn.dense_weight.set_data(conv.weight.data())
    inside_spns = {id(b) for s in spns for b in _blocks(s, nn.BatchNorm)}
    outer = [b for b in _blocks(st, nn.BatchNorm) if id(b) not in inside_spns]
    assert len(outer) == len(_blocks(ref, nn.BatchNorm)) == 20
    for mine, theirs in zip(outer, _blocks(ref, nn.BatchNorm)):
        for name in ('gamma', 'beta', 'running_mean', 'running_var'):
            getattr(mine, name).set_data(mx.nd.random.uniform(0.5, 1.5, shape=getattr(
                theirs, name).shape))
            getattr(theirs, name).set_data(getattr(mine, name).data())
    st.output.weight.set_data(ref.output.weight.data())
    x = mx.nd.random.uniform(shape=(2, 3, 48, 48))
    np.testing.assert_allclose(st(x).asnumpy(), ref(x).asnumpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('kwargs', [dict(nbr_mul=[1, 1]), dict(out_patch=[1, 2, 1]),
                                    dict(groups=0), dict(groups=3)])
def test_st_resnet18_rejects_bad_options(kwargs):
    with pytest.raises(ValueError):
        get_model('st_resnet18', **kwargs)


# ------------------------------------------------------------------------------- data

def test_record_batches_shards_order_and_padding(tmp_path):
    # One class per image: the labels name the records.
    rec, idx = write_tiny_recordio(str(tmp_path / 'ids'), num_images=30, classes=30, seed=3)
    assert count_records(idx) == 30
    val = RecordBatches(rec, 8, image_size=16, train=False, num_workers=1)
    for _ in range(2):  # every pass: each record once, in order, the padding dropped
        # (a batch is valid until the next is drawn, as with any MXNet iterator: copy it)
        batches = [(x.shape, y.asnumpy()) for x, y in val]
        assert np.concatenate([y for _, y in batches]).tolist() == list(range(30))
        assert [shape for shape, _ in batches] == [(8, 3, 16, 16)] * 3 + [(6, 3, 16, 16)]

    def epoch_labels(part, epoch):
        train = RecordBatches(rec, 4, image_size=16, train=True, num_parts=2, part_index=part,
                              num_workers=1)
        train.set_epoch(epoch)
        batches = [(x.shape, y.asnumpy()) for x, y in train]
        assert len(train) == len(batches) == 3  # 15 records per part: 3 whole batches of 4
        assert all(shape == (4, 3, 16, 16) for shape, _ in batches)
        return np.concatenate([y for _, y in batches]).astype(int).tolist()

    first, second = epoch_labels(0, 0), epoch_labels(1, 0)
    assert not set(first) & set(second)  # the two workers read different records
    assert epoch_labels(0, 0) == first  # an epoch's order is reproducible (resume) ...
    assert epoch_labels(0, 1) != first  # ... and changes from epoch to epoch
    assert batches_per_epoch(30, 4, num_parts=2) == 3
    with pytest.raises(ValueError):
        batches_per_epoch(6, 4, num_parts=2)


def test_training_images_are_normalised(tmp_path):
    rec, _ = write_tiny_recordio(str(tmp_path / 'tiny'), num_images=16, classes=2, seed=0)
    x, y = next(iter(RecordBatches(rec, 16, image_size=24, train=True, num_workers=1)))
    assert x.shape == (16, 3, 24, 24) and set(y.asnumpy().tolist()) <= {0.0, 1.0}
    values = x.asnumpy()
    assert -3 < values.mean() < 3 and 0.05 < values.std() < 3  # mean/std scaled, not 0-255


# ------------------------------------------------------------------------------- schedule

def test_phases_follow_spec_2_5():
    full, ternary, frozen = imagenet.imagenet_stages()
    assert (full.epochs, full.lr, full.steps, full.phase) == (70, 0.05, (40, 60), Phase.FULL)
    assert learning_rate(full, 39) == 0.05
    assert learning_rate(full, 40) == pytest.approx(0.005)
    assert learning_rate(full, 60) == pytest.approx(0.0005)
    assert (ternary.epochs, ternary.lr, ternary.phase, ternary.frozen) == \
        (10, 0.0005, Phase.TERNARY, False)
    assert learning_rate(ternary, 9) == 0.0005
    assert (frozen.epochs, frozen.lr, frozen.phase, frozen.frozen) == \
        (5, 0.0005, Phase.TERNARY, True)
    short = imagenet.imagenet_stages(epochs=(7, 0, 1))
    assert [p.name for p in short] == ['full', 'frozen'] and short[0].steps == (4, 6)
    (dense,) = imagenet.imagenet_stages(spn=False, epochs=(70, 10, 5))
    assert (dense.name, dense.phase, dense.epochs) == ('dense', Phase.DENSE, 70)


def test_command_rejects_bad_options(tmp_path, capsys):
    data = _tiny_data(tmp_path, 8, 4)
    with pytest.raises(SystemExit):
        imagenet.parse_args(data + ['--nbr_mul', '1,2'])
    assert imagenet.main(data + TINY + ['--kvstore', 'dist_sync']) == EXIT_USAGE
    assert 'launch' in capsys.readouterr().err


# ------------------------------------------------------------------------------- command

def test_command_trains_phases_distils_and_resumes(tmp_path):
    data = _tiny_data(tmp_path)
    teacher_dir, student_dir = str(tmp_path / 'teacher'), str(tmp_path / 'student')
    assert imagenet.main(data + TINY + ['--model', 'resnet18', '--epochs_fp', '1',
                                        '--log_dir', str(tmp_path), '--run_name',
                                        'teacher']) == 0
    assert read_meta(latest_checkpoint(teacher_dir))['model'] == 'resnet18'
    student = data + TINY + ['--model', 'st_resnet18', '--nbr_mul', '1,1,0.5,0.5,0.5',
                             '--out_patch', '2', '--groups', '2', '--teacher_model', teacher_dir,
                             '--log_dir', str(tmp_path), '--epochs_fp', '1']
    # Full-precision and ternary stages, then resume with a frozen stage added.
    assert imagenet.main(student + ['--epochs_quant', '1', '--epochs_frozen', '0',
                                    '--run_name', 'student']) == 0
    ternary = latest_checkpoint(student_dir)
    assert read_meta(ternary)['stage'] == 'ternary'
    before = mx.nd.load(os.path.join(ternary, 'model.params'))
    assert imagenet.main(student + ['--epochs_quant', '1', '--epochs_frozen', '1',
                                    '--resume', student_dir]) == 0
    records = read_jsonl(os.path.join(student_dir, 'log.jsonl'))
    assert [r['stage'] for r in records] == ['full', 'ternary', 'frozen']
    assert all(np.isfinite(r['train_loss']) and r['images'] == 8 for r in records)
    final = latest_checkpoint(student_dir)
    meta = read_meta(final)
    assert meta['finished'] and meta['model_kwargs']['groups'] == 2
    after = mx.nd.load(os.path.join(final, 'model.params'))
    def unchanged(key):
        return np.array_equal(before[key].asnumpy(), after[key].asnumpy())
    # The frozen stage keeps W_b and W_c and trains ã.
    ternary_weights = [k for k in after if k.endswith(('.wb', '.wc'))]
    assert len(ternary_weights) == 40 and all(unchanged(k) for k in ternary_weights)
    assert not all(unchanged(k) for k in after if k.endswith('.scale'))


def test_dist_sync_two_workers_end_with_identical_weights(tmp_path):
    """A real dist_sync job: MXNet's launcher starts a scheduler, one server and two workers."""
    data = _tiny_data(tmp_path, train_images=32)
    log_dir = tmp_path / 'run'
    worker = [sys.executable, '-m', 'strassen_gluon.imagenet', '--kvstore', 'dist_sync',
              '--log_dir', str(tmp_path), '--run_name', 'run', '--epochs_fp', '1', '--epochs_quant', '1',
              '--epochs_frozen', '1'] + data + TINY
    command = [sys.executable, '-m', 'strassen_gluon.imagenet', 'launch', '-n', '2', '-s', '1',
               '--launcher', 'local', '--'] + worker
    # A failed worker leaves the scheduler waiting: bound the time, then end the whole group.
    proc = subprocess.Popen(command, cwd=str(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env=dict(os.environ, OMP_NUM_THREADS='1'))
    try:
        output, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail('the dist_sync job did not finish in 240 s:\n' + output[-4000:])
    assert proc.returncode == 0, output[-4000:]
    assert output.count('summary.json') == 2, output[-4000:]   # one final line per worker

    params, logs = [], []
    for rank in (0, 1):
        run_dir = str(log_dir / ('worker%d' % rank))
        meta = read_meta(latest_checkpoint(run_dir))
        assert (meta['rank'], meta['num_workers'], meta['finished']) == (rank, 2, True)
        params.append(mx.nd.load(os.path.join(latest_checkpoint(run_dir), 'model.params')))
        logs.append(read_jsonl(os.path.join(run_dir, 'log.jsonl')))
    assert [r['stage'] for r in logs[0]] == ['full', 'ternary', 'frozen'] == \
        [r['stage'] for r in logs[1]]
    # The workers read different shards (different losses) ...
    assert logs[0][0]['train_loss'] != logs[1][0]['train_loss']
    # ... and end with identical parameters, batch-norm statistics included.
    assert params[0].keys() == params[1].keys()
    for key in params[0]:
        np.testing.assert_array_equal(params[0][key].asnumpy(), params[1][key].asnumpy(),
                                      err_msg=key)
    # Training changed them: ã starts at 1, the classifier bias and BN shifts at 0.
    final = params[0]
    assert any(not np.allclose(v.asnumpy(), 1) for k, v in final.items() if k.endswith('.scale'))
    assert np.abs(final['output.bias'].asnumpy()).max() > 0
    assert any(np.abs(v.asnumpy()).max() > 0 for k, v in final.items() if k.endswith('.beta'))


DIST_SCRIPT = '''
import sys
import numpy as np
import mxnet as mx
from mxnet import autograd, gluon
from strassen_gluon.imagenet import DistSyncTrainer, WorkerGroup


def batch(rank):
    rng = np.random.RandomState(rank)
    return mx.nd.array(rng.randn(5, 6)), mx.nd.array(rng.randint(0, 3, 5))


def train(net, trainer, x, y):
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for _ in range(3):
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(x.shape[0])


def batchnorm_after(x):
    bn = gluon.nn.BatchNorm(in_channels=6)
    bn.initialize()
    with autograd.record():
        bn(x)
    return bn


mode, out = sys.argv[1], sys.argv[2]
mx.random.seed(7)
net = gluon.nn.HybridSequential()
net.add(gluon.nn.Dense(4, in_units=6, activation='tanh'), gluon.nn.Dense(3, in_units=4))
net.initialize(mx.init.Xavier())
sgd = {'learning_rate': 0.5, 'momentum': 0.9, 'wd': 0.01}
if mode == 'dist':
    group = WorkerGroup(mx.kv.create('dist_sync'))
    group.broadcast_parameters(net)
    x, y = batch(group.rank)
    train(net, DistSyncTrainer(net.collect_params(), 'sgd', sgd, group), x, y)
    bn = batchnorm_after(x)
    group.average_batchnorm_statistics(bn)
    stats = [bn.running_mean.data().asnumpy(), bn.running_var.data().asnumpy()]
    out = '%s.%d' % (out, group.rank)
else:  # one process, both workers' batches in one
    xs, ys = zip(*[batch(rank) for rank in (0, 1)])
    train(net, gluon.Trainer(net.collect_params(), 'sgd', sgd), mx.nd.concat(*xs, dim=0),
          mx.nd.concat(*ys, dim=0))
    bns = [batchnorm_after(x) for x in xs]
    stats = [np.mean([b.running_mean.data().asnumpy() for b in bns], axis=0),
             np.mean([b.running_var.data().asnumpy() for b in bns], axis=0)]
np.savez(out, stats=np.stack(stats),
         **{k: v.data().asnumpy() for k, v in net.collect_params().items()})
'''


def test_dist_sync_trainer_equals_one_process_with_both_batches(tmp_path):
    """Summed gradients, rescaling, momentum and weight decay: 2 workers x 5 images = 10 images
    in one process; the BN statistics become the mean of the workers'."""
    script = tmp_path / 'worker.py'
    script.write_text(DIST_SCRIPT)
    out = str(tmp_path / 'weights')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    subprocess.run([sys.executable, str(script), 'reference', out + '.ref.npz'], check=True,
                   env=env, timeout=120)
    proc = subprocess.Popen([sys.executable, '-m', 'strassen_gluon.imagenet', 'launch', '-n', '2',
                             '-s', '1', '--launcher', 'local', '--', sys.executable, str(script),
                             'dist', out], cwd=str(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env)
    try:
        output, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail('the dist_sync job did not finish in 120 s:\n' + output[-4000:])
    assert proc.returncode == 0, output[-4000:]
    ref = np.load(out + '.ref.npz')
    for rank in (0, 1):
        got = np.load('%s.%d.npz' % (out, rank))
        assert sorted(got.files) == sorted(ref.files)
        for key in ref.files:
            np.testing.assert_allclose(got[key], ref[key], rtol=1e-5, atol=1e-6, err_msg=key)
