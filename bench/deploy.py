"""Inference speed of resnet20 and st_resnet20 (p = 1, p = 2) in three runtimes, in one run.

    python bench/deploy.py [--batches 1 128] [--rounds 7] [--iters 1,10] [--per_layer]

Runtimes: "training graph" (the registry network, hybridized, inference mode), "inference graph"
(strassen_gluon.export.inference_net, hybridized; also in bfloat16 where the CPU has fast
bfloat16 kernels), "onnxruntime" (the file of strassen_gluon.export.to_onnx, CPU execution
provider). SPN networks are in phase TERNARY with
random weights (speed does not depend on the values). Each runtime and batch size is timed
round by round, the networks interleaved, so that load from other processes affects all alike;
the table gives images/s (median round) and the time ratio to the dense resnet20 in the same
runtime: the ratios are what to read. Goals (issue 12): p = 2 inference graph <= 1.3x the dense
time in MXNet and <= 1.2x in onnxruntime; p = 1 <= 1.15x in both.

--per_layer [BATCH] adds where the time goes (at the largest batch, or BATCH): every
convolution layer of the MXNet inference graphs timed alone on its input (dense vs p = 1 vs
p = 2, layer by layer), and onnxruntime's profile (time per node type) of the files.
"""
import argparse
import collections
import json
import os
import statistics
import tempfile
import time

import mxnet as mx
from mxnet import nd

from strassen_gluon import set_phase
from strassen_gluon.export import inference_net, to_onnx
from strassen_gluon.export.graph import conv_calls
from strassen_gluon.export.onnx_file import onnx_session
from strassen_gluon.models import get_model
from strassen_gluon.train.precision import bfloat16_support

NETWORKS = [('resnet20', 'resnet20', {}), ('st_resnet20 p=1', 'st_resnet20', {'out_patch': 1}),
            ('st_resnet20 p=2', 'st_resnet20', {'out_patch': 2})]
GOALS = {('inference graph', 'st_resnet20 p=2'): 1.3, ('onnxruntime', 'st_resnet20 p=2'): 1.2,
         ('inference graph', 'st_resnet20 p=1'): 1.15, ('onnxruntime', 'st_resnet20 p=1'): 1.15}
SHAPE = (3, 32, 32)
# The inference graph in bfloat16 too, where oneDNN's bfloat16 kernels are fast.
BFLOAT16 = bfloat16_support()[0] == 'fast'


def build(model, kwargs):
    mx.random.seed(0)
    net = get_model(model, **kwargs)
    net.initialize(mx.init.Xavier())
    if model.startswith('st_'):
        set_phase(net, 'ternary')
    return net


def mxnet_runner(block, x):
    def run():
        block(x).wait_to_read()
    return run


def onnx_runner(session, x):
    feed = {session.get_inputs()[0].name: x.asnumpy()}

    def run():
        session.run(None, feed)
    return run


def runners(folder, batch):
    """{runtime: {network: callable running one batch}}."""
    x = nd.random.normal(shape=(batch,) + SHAPE)
    out = collections.defaultdict(dict)
    for label, model, kwargs in NETWORKS:
        net = build(model, kwargs)
        net.hybridize(static_alloc=True, static_shape=True)
        out['training graph'][label] = mxnet_runner(net, x)
        out['inference graph'][label] = mxnet_runner(
            inference_net(net, input_shape=(batch,) + SHAPE), x)
        if BFLOAT16:
            out['inference graph, bfloat16'][label] = mxnet_runner(
                inference_net(net, input_shape=(batch,) + SHAPE, dtype='bfloat16'), x)
        path = os.path.join(folder, '%s.onnx' % label.replace(' ', '_').replace('=', ''))
        to_onnx(net, path, (batch,) + SHAPE)
        out['onnxruntime'][label] = onnx_runner(onnx_session(path), x)
    return out


def time_round(run, iters):
    start = time.perf_counter()
    for _ in range(iters):
        run()
    nd.waitall()
    return (time.perf_counter() - start) / iters


def measure(runs, rounds, iters):
    """{network: median seconds per batch}, networks interleaved round by round."""
    for run in runs.values():  # untimed: builds cached graphs, allocates
        run()
        run()
    seconds = collections.defaultdict(list)
    for _ in range(rounds):
        for label, run in runs.items():
            seconds[label].append(time_round(run, iters))
    return {label: statistics.median(values) for label, values in seconds.items()}


def mxnet_layer_times(deployed, x, rounds, iters):
    """{layer key: ms per batch} of each convolution layer of the inference graph called alone
    (hybridized) on the input it gets inside the network; interleaved rounds, median. The key
    (input shape, channels, kernel, stride, occurrence) matches a layer across networks whose
    layers are called in another order."""
    runs, seen = {}, collections.Counter()
    for block, inputs in conv_calls(deployed, x):
        shape = 'in %s -> %d, %dx%d s%d' % ('x'.join(map(str, inputs.shape[1:])), block.channels,
                                             block.kernel[0], block.kernel[1], block.strides[0])
        seen[shape] += 1
        block.hybridize(static_alloc=True, static_shape=True)
        runs['%s #%d' % (shape, seen[shape])] = mxnet_runner(block, inputs.copy())
    return {key: 1e3 * s for key, s in measure(runs, rounds, iters).items()}


def onnx_profile(path, x, iters):
    """Milliseconds per batch by ONNX node type, from onnxruntime's profile."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = os.path.join(folder, 'ort')
        session = onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        feed = {session.get_inputs()[0].name: x.asnumpy()}
        for _ in range(iters):
            session.run(None, feed)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    totals = collections.Counter()
    for event in events:
        if event.get('cat') == 'Node' and event['name'].endswith('_kernel_time'):
            totals[event['args']['op_name']] += event['dur'] / 1e3 / iters
    return totals


def print_breakdown(title, totals, top=8):
    total = sum(totals.values())
    print('  %s: %.1f ms per batch in operators' % (title, total))
    for op, ms in totals.most_common(top):
        print('    %-28s %8.2f ms  %5.1f%%' % (op, ms, 100 * ms / total))


def per_layer(batch, rounds, iters):
    print('\nwhere the time goes, batch %d: each convolution layer of the inference graph '
          'alone (MXNet, ms per batch, median of %d rounds)' % (batch, rounds))
    x = nd.random.normal(shape=(batch,) + SHAPE)
    times = {}
    for label, model, kwargs in NETWORKS:
        deployed = inference_net(build(model, kwargs), input_shape=(batch,) + SHAPE)
        times[label] = mxnet_layer_times(deployed, x, rounds, iters)
    dense = times['resnet20']
    others = [label for label, _, _ in NETWORKS if label != 'resnet20']
    print('%-34s %8s' % ('layer', 'dense') + ''.join(' %16s' % label for label in others))
    # The dense stem (a bare Conv2D, no batch norm) stays a Gluon Conv2D, not timed here; the
    # sums compare the layers both networks have.
    for key in times[others[0]]:
        print('%-34s %8s' % (key, '%.2f' % dense[key] if key in dense else '-') + ''.join(
            ' %8.2f %7s' % (times[o][key], '(%.2fx)' % (times[o][key] / dense[key])
                            if key in dense else '') for o in others))
    print('%-34s %8.2f' % ('sum of shared layers', sum(dense.values())) + ''.join(
        ' %8.2f (%4.2fx)' % (sum(times[o][k] for k in dense), sum(times[o][k] for k in dense) /
                             sum(dense.values())) for o in others))
    print('\nonnxruntime, batch %d: time per node type (its profiler, %d batches)' % (batch, iters))
    with tempfile.TemporaryDirectory() as folder:
        for label, model, kwargs in NETWORKS:
            path = os.path.join(folder, 'net.onnx')
            to_onnx(build(model, kwargs), path, (batch,) + SHAPE)
            print_breakdown(label, onnx_profile(path, x, iters))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 128])
    parser.add_argument('--rounds', type=int, default=7, help='timed rounds per network')
    parser.add_argument('--iters', type=lambda s: [int(v) for v in s.split(',')],
                        default=[50, 3],
                        help='batches per round: one value, or one per --batches entry')
    parser.add_argument('--per_layer', type=int, nargs='?', const=-1, default=None,
                        metavar='BATCH',
                        help='also time every layer alone, and profile onnxruntime, at batch '
                             'BATCH (default: the largest of --batches)')
    args = parser.parse_args(argv)
    iters = dict(zip(args.batches, args.iters * len(args.batches) if len(args.iters) == 1
                     else args.iters))
    import onnxruntime
    print('MXNet %s, onnxruntime %s, %d CPU cores visible; median of %d rounds; '
          'ratio = time / dense resnet20 time in the same runtime'
          % (mx.__version__, onnxruntime.__version__, os.cpu_count(), args.rounds))
    rows, missed = [], []
    with tempfile.TemporaryDirectory() as folder:
        for batch in args.batches:
            for runtime, runs in runners(folder, batch).items():
                seconds = measure(runs, args.rounds, iters[batch])
                dense = seconds['resnet20']
                for label, s in seconds.items():
                    ratio = s / dense
                    goal = GOALS.get((runtime, label))
                    verdict = '' if goal is None else ('ok' if ratio <= goal else 'MISSED') + \
                        ' (goal <= %.2fx)' % goal
                    if verdict.startswith('MISSED'):
                        missed.append((runtime, label, batch))
                    rows.append((runtime, batch, label, batch / s, ratio, verdict))
    print('%-26s %5s  %-16s %10s %7s  %s' % ('runtime', 'batch', 'network', 'images/s', 'ratio',
                                             'goal'))
    for runtime, batch, label, rate, ratio, verdict in rows:
        print('%-26s %5d  %-16s %10.0f %6.2fx  %s' % (runtime, batch, label, rate, ratio, verdict))
    if missed:
        print('missed goals: %s' % '; '.join('%s %s batch %d' % m for m in missed))
    if args.per_layer is not None:
        batch = max(args.batches) if args.per_layer < 0 else args.per_layer
        per_layer(batch, args.rounds, iters.get(batch, max(1, 256 // batch)))


if __name__ == '__main__':
    main()
