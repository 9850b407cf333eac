"""The one command-line convention of the training commands (cifar10, imagenet, langmod).

Every command spells the shared options the same way (:func:`add_run_arguments`,
:func:`add_distillation_arguments`), parses per-stage lists with :func:`per_stage` (checked for
length at parse time), turns ``--gpu_index`` into contexts with :func:`contexts`, fills its typed
configuration with :func:`config_from_args`, and runs ``train(config)`` inside
:func:`run_command`, the only place where library exceptions become messages and exit codes
(see :mod:`strassen_gluon.errors`).
"""
import argparse
import dataclasses
import shlex
import sys

import mxnet as mx

from .errors import EXIT_INTERRUPTED, StrassenError, UsageError

__all__ = ['HelpFormatter', 'add_run_arguments', 'add_distillation_arguments', 'per_stage',
           'int_list', 'contexts', 'parse_config', 'config_from_args', 'run_command',
           'command_line', 'UsageError']


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except None and False (which mean 'not set')."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_run_arguments(parser, log_dir, name_example):
    """Devices, run folder, resume, seed and output options, the same for every command."""
    r = parser.add_argument_group('run')
    r.add_argument('--gpu_index', '--gpus', '--gpu_idx', dest='devices', default=None,
                   metavar='DEVICES',
                   help='GPU number, a comma list of them (data-parallel training), or -1 / '
                        'an empty string for the CPU; default GPU 0 when there is one, else '
                        'the CPU')
    r.add_argument('--log_dir', default=log_dir, help='parent folder of the run folders')
    r.add_argument('--run_name', default=None,
                   help="name of this run's folder in --log_dir; default %s-<date-time>"
                        % name_example)
    r.add_argument('--resume', nargs='?', const='latest', default=None, metavar='RUN_DIR',
                   help='continue a run from its newest checkpoint that verifies; without a '
                        'value, the newest run folder in --log_dir')
    r.add_argument('--seed', type=int, default=321,
                   help='seed of initialisation, subset, shuffling, augmentation and dropout')
    r.add_argument('--stop_after_epochs', type=int, default=None,
                   help='stop (resumably) after N epochs of this invocation')
    r.add_argument('--keep_checkpoints', type=int, default=2,
                   help='checkpoint folders kept (the newest N; at least 1)')
    r.add_argument('--quiet', action='store_true', help='no progress bar')
    return r


def add_distillation_arguments(parser, teacher_example):
    """--teacher_model, --dist_lambda, --dist_temp, as the original LM command had them."""
    group = parser.add_argument_group('distillation')
    group.add_argument('--teacher_model', default=None, metavar='PATH',
                       help='run folder (or checkpoint folder) of a trained model, e.g. a %s '
                            'run of this command; its logits teach the student in every phase'
                            % teacher_example)
    group.add_argument('--dist_lambda', type=float, default=0.5,
                       help='weight of the soft (teacher) loss')
    group.add_argument('--dist_temp', type=float, default=1.0, help='softmax temperature')
    return group


def per_stage(kind, stages):
    """An argparse type: one value, or a comma list of exactly `stages` values."""
    def parse(text):
        try:
            values = [kind(v) for v in str(text).split(',')]
        except ValueError:
            raise argparse.ArgumentTypeError('%r: expected one %s or %d comma-separated ones'
                                             % (text, kind.__name__, stages)) from None
        if len(values) == 1:
            return values[0]
        if len(values) != stages:
            raise argparse.ArgumentTypeError('%r has %d values; give one, or one per stage (%d)'
                                             % (text, len(values), stages))
        return values
    parse.__name__ = '%s_per_stage' % kind.__name__
    return parse


def at_least(low):
    """An argparse type: an integer >= low."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError('%r is not an integer' % text) from None
        if value < low:
            raise argparse.ArgumentTypeError('must be >= %d, got %d' % (low, value))
        return value
    parse.__name__ = 'integer >= %d' % low
    return parse


def int_list(text):
    """A comma list of integers ('' is the empty list)."""
    try:
        return [int(v) for v in text.split(',') if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not a comma list of integers' % text) from None


def contexts(devices, say=print):
    """Contexts from the devices option: None (default) GPU 0 or, without one, the CPU with a
    message; '-1' or '' the CPU; '0' or '0,1' those GPUs (a missing one is a UsageError)."""
    if devices is None:
        if mx.context.num_gpus() == 0:
            say('no GPU found: training on the CPU')
            return [mx.cpu()]
        return [mx.gpu(0)]
    text = str(devices).strip()
    if text in ('', '-1'):
        return [mx.cpu()]
    try:
        indices = [int(i) for i in text.split(',')]
    except ValueError:
        raise UsageError('--gpu_index takes -1 (CPU), a GPU number or a comma list of them, '
                         'not %r' % (devices,)) from None
    if any(i < 0 for i in indices) or len(set(indices)) != len(indices):
        raise UsageError('--gpu_index %s: GPU numbers are distinct and >= 0 (-1 alone means '
                         'the CPU)' % text)
    available = mx.context.num_gpus()
    missing = [i for i in indices if i >= available]
    if missing:
        raise UsageError('--gpu_index %s: GPU %s requested, but this machine has %s'
                         % (text, ','.join(map(str, missing)),
                            '%d GPU(s) (0-%d)' % (available, available - 1) if available
                            else 'no GPU (use --gpu_index -1 for the CPU)'))
    return [mx.gpu(i) for i in indices]


_UNSET = object()


def parse_config(parser, argv, defaults=None):
    """Parse `argv`; returns (namespace, explicit): explicit is the set of destinations the
    user wrote on the command line (even when equal to the default).

    `defaults` (e.g. a --quick preset) replaces the parser's defaults for this parse only.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if defaults:
        parser.set_defaults(**defaults)
    args = parser.parse_args(argv)
    # argparse fills a default only into attributes the namespace lacks, so a namespace
    # pre-filled with a marker shows which options the command line set.
    marked = parser.parse_args(argv, namespace=argparse.Namespace(
        **{k: _UNSET for k in vars(args)}))
    explicit = {k for k, v in vars(marked).items() if v is not _UNSET}
    return args, explicit


def config_from_args(config_type, args, **extra):
    """The dataclass `config_type` filled from the namespace (fields it lacks are ignored)."""
    values = dict(vars(args), **extra)
    names = {f.name for f in dataclasses.fields(config_type)}
    return config_type(**{k: v for k, v in values.items() if k in names})


def command_line(module, argv):
    """The command as a user would type it (stored in config.json and summary.json)."""
    return ' '.join(shlex.quote(a) for a in ['python', '-m', module] + list(argv))


def run_command(fn, *args, **kwargs):
    """Call `fn`; returns the exit status: 0, or the one of a library error (its message
    printed to stderr), 130 on Ctrl-C."""
    try:
        fn(*args, **kwargs)
    except StrassenError as err:
        print('error: %s' % err, file=sys.stderr)
        return err.exit_status
    except KeyboardInterrupt:
        print('\ninterrupted', file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
