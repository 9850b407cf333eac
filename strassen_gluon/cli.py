"""The one command-line convention of the training commands (cifar10, imagenet, langmod).

A command's parser is derived from its typed configuration (:func:`build_parser`): every option
of a dataclass made with :func:`strassen_gluon.config.option` becomes ``--name`` (underscores,
the original project's names where they come from it, older spellings as aliases), with the
field's default and help, so each default is written once. Booleans that default to False are
switches (``--quiet``), those that default to True are turned off by ``--no_<name>``.
:func:`parse` returns the configuration and the options the user wrote; ranges are checked by
:func:`strassen_gluon.config.check_options` inside ``train(config)``, so Python callers get the
same messages. :func:`run_command` is the only place where library exceptions become messages
and exit codes (see :mod:`strassen_gluon.errors`); a usage error exits 2.
"""
import argparse
import contextlib
import dataclasses
import shlex
import signal
import sys
import threading

from .config import option_fields
from .errors import EXIT_INTERRUPTED, StrassenError, UsageError
from .train.build import contexts

__all__ = ['HelpFormatter', 'Parser', 'build_parser', 'parse', 'per_stage', 'int_list', 'at_least',
           'contexts', 'run_command', 'command_line', 'UsageError']


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except None ('not set') and those of switches."""

    def _get_help_string(self, action):
        if action.default is None or isinstance(action.default, bool):
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line (``error: ...``) and exit status 2."""

    def error(self, message):
        self.exit(2, 'error: %s (%s --help lists the options)\n' % (message, self.prog))


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


def _argument(field, stages):
    """(flags, argparse keyword arguments) of one configuration field."""
    meta, name = field.metadata, field.name
    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    kwargs = dict(dest=name, default=default, help=meta['help'])
    if meta['metavar']:
        kwargs['metavar'] = meta['metavar']
    flags = list(meta['flags'])    # given: every spelling, the documented one first
    if isinstance(default, bool):
        kwargs['action'] = 'store_false' if default else 'store_true'
        return flags or ['--no_' + name if default else '--' + name], kwargs
    parse = meta['parse']
    if parse == 'int_list':
        kwargs['type'] = int_list
    elif isinstance(parse, tuple) and parse[0] == 'per_stage':
        kwargs['type'] = per_stage(parse[1], stages)
    elif callable(parse):
        kwargs['type'] = parse
    elif meta['nargs'] == '?':
        kwargs.update(nargs='?', const='latest')
    elif isinstance(default, list):
        kwargs.update(nargs='+', type=type(default[0]) if default else str)
    elif default is not None:
        kwargs['type'] = type(default)
    elif 'float' in str(field.type):
        kwargs['type'] = float
    elif 'int' in str(field.type):
        kwargs['type'] = int
    if meta['choices'] is not None:
        kwargs['choices'] = meta['choices']
    return flags or ['--' + name], kwargs


def build_parser(config_type, prog, description, stages=None):
    """An argparse parser with one option per field of `config_type` (see the module's
    docstring), grouped as the fields say. `stages`: the length of per-stage lists."""
    parser = Parser(prog=prog, description=description, formatter_class=HelpFormatter)
    groups = {}
    for f in option_fields(config_type):
        flags, kwargs = _argument(f, stages)
        group = f.metadata['group'] or 'options'
        if group not in groups:
            groups[group] = parser.add_argument_group(group)
        groups[group].add_argument(*flags, **kwargs)
    return parser


_UNSET = object()


def parse(parser, config_type, argv=None):
    """(config, explicit): `argv` parsed into `config_type`; explicit is the set of options the
    user wrote on the command line (even when equal to the default)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    # argparse fills a default only into attributes the namespace lacks, so a namespace
    # pre-filled with a marker shows which options the command line set.
    marked = parser.parse_args(argv, namespace=argparse.Namespace(
        **{k: _UNSET for k in vars(args)}))
    explicit = {k for k, v in vars(marked).items() if v is not _UNSET}
    names = {f.name for f in dataclasses.fields(config_type)}
    return config_type(**{k: v for k, v in vars(args).items() if k in names}), explicit


def command_line(module, argv):
    """The command as a user would type it (stored in config.json and summary.json)."""
    return ' '.join(shlex.quote(a) for a in ['python', '-m', module] + list(argv))


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM (`kill`'s default, and a cluster scheduler's notice) stops a command as Ctrl-C
    does: the last complete epoch kept, the resume command printed, status 130. Needed also
    because a job started with `&` from a script ignores SIGINT, so Ctrl-C cannot reach it."""
    if threading.current_thread() is not threading.main_thread():
        yield   # signal handlers can only be set in the main thread
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_command(fn, *args, **kwargs):
    """Call `fn`; returns the exit status: 0, or the one of a library error (its message
    printed to stderr), 130 on Ctrl-C or SIGTERM."""
    try:
        with terminate_as_interrupt():
            fn(*args, **kwargs)
    except StrassenError as err:
        print('error: %s' % err, file=sys.stderr)
        return err.exit_status
    except KeyboardInterrupt:
        print('\ninterrupted', file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0
