"""python -m strassen_gluon.export RUN_DIR --onnx FILE [--check] [--packed FILE.npz]

Writes the trained model of a run folder (or checkpoint folder) as an ONNX file with ternary
int8 W_b / W_c (strassen_gluon.export.to_onnx) and/or as the numpy deployment form with W_b and
W_c packed at 2 bits per weight (save_exported(..., packed=True); load_exported reads it), and
prints the deployed model's size (strassen_gluon.counting). --check runs the ONNX file in
onnxruntime on a random batch and compares it with MXNet.

The language model (st_charlm) exports with --packed (its SPN LSTM, highway and char-CNN layers
in the numpy deployment form); --onnx is refused for it: the ONNX graph covers feed-forward image
networks.

Exit status (strassen_gluon.errors): 0 done; 1 run folder missing or without a checkpoint, or
its SPN layers not ternary; 2 bad options, including an output file that cannot be written
(checked before anything is loaded) and --onnx of a recurrent network; 4 --check found a
relative difference >= 1e-4. Output files are written whole or not at all.
"""
import sys

import mxnet as mx

from .. import cli
from ..counting import example_inputs, human
from ..errors import CheckFailed, UsageError
from ..files import require_writable
from ..train.teacher import load_trained
from .forms import export_model, save_exported
from .onnx_file import check_onnx, require_feedforward, require_ternary, to_onnx

MODULE = 'strassen_gluon.export'
CHECK_TOLERANCE = 1e-4  # largest |onnxruntime - MXNet| relative to max |MXNet output|


def parse_args(argv=None):
    parser = cli.Parser(prog='python -m ' + MODULE, description=__doc__.split(
        '\n\n')[1], formatter_class=cli.HelpFormatter)
    parser.add_argument('run_dir', metavar='RUN_DIR',
                        help='run folder of a training command, or one of its ckpt-* folders')
    parser.add_argument('--onnx', metavar='FILE', help='write the ONNX file FILE')
    parser.add_argument('--check', action='store_true',
                        help='run FILE in onnxruntime and compare with MXNet (relative error '
                             'below %g)' % CHECK_TOLERANCE)
    parser.add_argument('--packed', metavar='FILE.npz',
                        help='write the deployment form with W_b and W_c at 2 bits per weight')
    parser.add_argument('--input_size', type=cli.at_least(1), default=None,
                        help="image side S of the (N, 3, S, S) input (default: the model's)")
    parser.add_argument('--opset', type=int, default=None,
                        help="ONNX opset to declare (13 up to the exporter's, default the "
                             "exporter's: 21 with onnx 1.16.2)")
    parser.add_argument('--check_batch', type=cli.at_least(1), default=8,
                        help='batch size of --check')
    parser.add_argument('--seed', type=cli.at_least(0), default=0,
                        help='seed of the --check batch')
    args = parser.parse_args(argv)
    if not args.onnx and not args.packed:
        parser.error('give --onnx FILE, --packed FILE.npz or both')
    if args.check and not args.onnx:
        parser.error('--check checks the --onnx file; give --onnx FILE')
    if args.opset is not None:
        from onnx.defs import onnx_opset_version
        if not 13 <= args.opset <= onnx_opset_version():
            parser.error('--opset takes 13 to %d (the exported nodes are opset 13 ones, stamped '
                         '%d by the exporter)' % (onnx_opset_version(), onnx_opset_version()))
    return args


def export(args, say=print):
    for option, path in (('--onnx', args.onnx), ('--packed', args.packed)):
        if path:
            require_writable(path, option)
    ctx = mx.cpu()
    net, meta, ckpt = load_trained(args.run_dir, ctx)
    say('%s from %s (phase %s, epoch %s)' % (meta['model'], ckpt, meta.get('phase', '-'),
                                             meta.get('epoch', '-')))
    require_ternary(net)
    if args.onnx:
        require_feedforward(net)
    try:
        shape = example_inputs(net, args.input_size, ctx)[0].shape
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.onnx:
        report = to_onnx(net, args.onnx, shape, opset=args.opset)
        size = report['size']
        say('wrote %s (opset %d, %s bytes): %d int8 initialisers with %s ternary weights'
            % (args.onnx, report['opset'], '{:,}'.format(report['file_bytes']),
               len(report['ternary_initializers']), '{:,}'.format(report['ternary_values'])))
        say('deployed size: %s bits = %.3f MB at 2 bits per ternary weight, 32 per other value '
            '(%s mults, %s adds per image)' % ('{:,}'.format(size['bits']), size['megabytes'],
                                              human(size['mults']), human(size['adds'])))
    if args.packed:
        forms = export_model(net)
        save_exported(args.packed, forms, packed=True)
        say('wrote %s (%s)' % (args.packed, 'W_b and W_c of %d SPN layers at 2 bits per weight; '
                               'strassen_gluon.export.load_exported reads it' % len(forms)
                               if forms else 'empty: the network has no SPN layer'))
    if args.check:
        mx.random.seed(args.seed)
        x = mx.nd.random.normal(shape=(args.check_batch,) + tuple(shape[1:]), ctx=ctx)
        diff = check_onnx(net, args.onnx, x)
        verdict = 'ok' if diff['relative'] < CHECK_TOLERANCE else 'FAILED'
        say('check (onnxruntime vs MXNet, batch %d): largest difference %.3g, relative %.3g: %s'
            % (args.check_batch, diff['max_abs'], diff['relative'], verdict))
        if verdict != 'ok':
            raise CheckFailed('%s differs from the trained network by %.3g (relative), above %g'
                              % (args.onnx, diff['relative'], CHECK_TOLERANCE))


def main(argv=None):
    args = parse_args(argv)
    return cli.run_command(export, args)


if __name__ == '__main__':
    sys.exit(main())
