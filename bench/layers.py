"""Forward+backward time of one SPN convolution relative to gluon's Conv2D of the same shape.

    python bench/layers.py [--batch 128] [--channels 64] [--repeats 20]

Every configuration is timed in the same run, interleaved round by round so that load from other
processes affects all alike; the ratios (SPN time / dense time) are what to read, not the seconds.
Targets (issue 2): ternary SPN at p = 1 within 1.3x of the dense convolution; at p = 2 faster.
The row "conv+bn+1x1" is the floor of any p = 1 SPN: gluon's own Conv2D (r filters), BatchNorm
and 1x1 Conv2D (W_c) in sequence, with no quantization and no SPN bookkeeping.
"""
import argparse
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon, nd

from strassen_gluon import Phase, SPNConv2D, set_phase


def make_step(layer, x):
    """One forward+backward pass; the caller synchronises."""
    def step():
        with autograd.record():
            y = layer(x)
        y.backward()
    return step


def build(kind, channels, patch):
    if kind == 'dense':
        layer = gluon.nn.Conv2D(channels, 3, 1, 1, in_channels=channels, use_bias=False)
    elif kind == 'conv+bn+1x1':
        layer = gluon.nn.HybridSequential()
        layer.add(gluon.nn.Conv2D(channels, 3, 1, 1, in_channels=channels, use_bias=False),
                  gluon.nn.BatchNorm(in_channels=channels),
                  gluon.nn.Conv2D(channels, 1, in_channels=channels, use_bias=False))
    else:
        layer = SPNConv2D(channels, 3, 1, 1, in_channels=channels, use_bias=False, nbr_mul=1,
                          out_patch=patch)
        set_phase(layer, Phase.FULL if kind == 'spn-full' else Phase.TERNARY)
    layer.initialize(mx.init.Xavier())
    layer.hybridize(static_alloc=True, static_shape=True)
    return layer


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--channels', type=int, default=64)
    parser.add_argument('--sizes', type=int, nargs='+', default=[8, 32])
    parser.add_argument('--repeats', type=int, default=20, help='timed rounds per configuration')
    args = parser.parse_args(argv)
    configs = [('dense', 1), ('conv+bn+1x1', 1), ('spn-full', 1), ('spn-ternary', 1),
               ('spn-full', 2), ('spn-ternary', 2)]
    print('MXNet %s, batch %d, %d->%d channels, 3x3, r = c_out; median of %d rounds'
          % (mx.__version__, args.batch, args.channels, args.channels, args.repeats))
    for size in args.sizes:
        x = nd.random.normal(shape=(args.batch, args.channels, size, size))
        steps = {cfg: make_step(build(cfg[0], args.channels, cfg[1]), x) for cfg in configs}
        for step in steps.values():  # untimed warm-up: graph construction, allocation
            step()
            step()
        nd.waitall()
        times = {cfg: [] for cfg in configs}
        for _ in range(args.repeats):
            for cfg, step in steps.items():
                start = time.perf_counter()
                step()
                nd.waitall()
                times[cfg].append(time.perf_counter() - start)
        dense = np.median(times[('dense', 1)])
        print('\n%dx%d maps' % (size, size))
        print('  %-12s %3s %10s %8s' % ('layer', 'p', 'ms/step', 'vs dense'))
        for (kind, patch), values in times.items():
            median = np.median(values)
            print('  %-12s %3d %10.2f %7.2fx' % (kind, patch, 1000 * median, median / dense))


if __name__ == '__main__':
    main()
