"""python -m strassen_gluon.count --model NAME [--nbr_mul R] [--out_patch P] [--set KEY=VALUE]

Prints the multiplications, additions and model size (bits) per layer of a registered model and
its reduction against the dense network, in the 'exact' or the paper's convention. The counting
itself is strassen_gluon.counting (docs/counting.md).
"""
import argparse
import ast
import json
import re
import sys

import mxnet as mx

from . import cli
from .config import Phase
from .counting import against_dense, example_inputs, format_reduction, format_table
from .errors import UsageError
from .layers.cost import CONVENTIONS
from .models import list_models
from .models.registry import model_stages
from .train.build import build_model


def parse_args(argv=None):
    parser = cli.Parser(
        prog='python -m strassen_gluon.count', formatter_class=cli.HelpFormatter,
        description='Multiplications, additions and model size (bits) per layer of a model, '
                    'with the conventions of the StrassenNets paper (docs/counting.md).',
        epilog="The poster's Table 1 cell r = 2 c_out, p = 2, g = 1: --model st_resnet18 "
               "--nbr_mul 2 --out_patch 2 --set layout=paper --set out_nbr_mul=1000 "
               "--convention paper")
    parser.add_argument('--model', required=True, choices=list_models(), metavar='NAME',
                        help='registered model: %s' % ', '.join(list_models()))
    parser.add_argument('--nbr_mul', help="r relative to each layer's outputs (one value or a "
                                          'comma list, one per stage)')
    parser.add_argument('--out_patch', help='output patch p of the SPN convolutions (one value '
                                            'or a comma list, one per stage)')
    parser.add_argument('--groups', type=int, help='groups g of W_b')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help='any other keyword of the model constructor (repeatable; VALUE is '
                             'a Python literal), e.g. --set word_vocab_size=10000')
    parser.add_argument('--input_size', type=cli.at_least(1),
                        help="image side S: count a (1, 3, S, S) input (default: the model's "
                             'own example input)')
    parser.add_argument('--phase', default='ternary', type=_phase,
                        help='phase to count SPN layers in (ternary: the trained model; dense: '
                             'the equivalent dense network)')
    parser.add_argument('--convention', default='exact', choices=CONVENTIONS,
                        help="exact: what this implementation computes and stores; paper: the "
                             "StrassenNets poster's rule (fractional p x p blocks, only the W_b "
                             'taps a block reads in the size, no SPN bias bits)')
    parser.add_argument('--json', action='store_true', help='print one JSON object')
    args = parser.parse_args(argv)
    # Per-stage lists have as many values as the model has stages (models.registry).
    stages = model_stages(args.model)
    for name, kind in (('nbr_mul', float), ('out_patch', int)):
        text = getattr(args, name)
        if text is None:
            continue
        try:
            setattr(args, name, cli.per_stage(kind, stages or 1)(text))
        except argparse.ArgumentTypeError as err:
            parser.error('argument --%s: %s' % (name, err))
    try:
        args.set = parse_settings(args.set)
    except ValueError as err:
        parser.error(str(err))
    return args


def _phase(text):
    try:
        return Phase.parse(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def parse_settings(pairs):
    """['a=1', 'b=x'] -> {'a': 1, 'b': 'x'} (values as Python literals, else strings)."""
    settings = {}
    for pair in pairs:
        key, sep, text = pair.partition('=')
        if not sep or not key:
            raise ValueError('--set takes KEY=VALUE, not %r' % pair)
        try:
            settings[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            settings[key] = text
    return settings


def model_from_options(name, options):
    """The registry model `name` built with `options`; a UsageError naming what is wrong (a
    constructor keyword the model needs is given with --set)."""
    try:
        return build_model(name, options)
    except TypeError as err:  # a required keyword of the constructor is missing
        needed = re.findall(r"'(\w+)'", str(err).partition('argument')[2])
        if 'missing' not in str(err) or not needed:
            raise UsageError('model %s cannot be built with %s: %s' % (
                name, ', '.join('%s=%r' % kv for kv in options.items()) or 'no options',
                err)) from None
        raise UsageError('model %s needs %s: give %s with --set KEY=VALUE, e.g. %s' % (
            name, ', '.join(needed), 'it' if len(needed) == 1 else 'each',
            ' '.join('--set %s=...' % key for key in needed))) from None


def count_command(args, say=print):
    """Build, count and print (the table, or one JSON object with --json)."""
    options = {k: v for k, v in dict(nbr_mul=args.nbr_mul, out_patch=args.out_patch,
                                     groups=args.groups, **args.set).items() if v is not None}
    net = model_from_options(args.model, options)
    try:
        inputs = example_inputs(net, args.input_size)
        result = against_dense(net, inputs, args.phase, args.convention)
    except (ValueError, mx.base.MXNetError) as err:
        raise UsageError(str(err).strip().splitlines()[0]) from None
    if args.json:
        say(json.dumps(dict(model=args.model, options=options, phase=args.phase.name.lower(),
                            convention=args.convention, **result), indent=1))
        return
    settings = ', '.join('%s=%s' % kv for kv in options.items())
    say(format_table(result, title='%s%s; input %s; SPN layers counted in phase %s, %s '
                                   'convention' % (
        args.model, ' (%s)' % settings if settings else '',
        ' '.join('x'.join(map(str, s)) for s in result['input_shapes']),
        args.phase.name.lower(), args.convention)))
    if 'dense_total' in result:
        say(format_reduction(result))


def main(argv=None):
    return cli.run_command(count_command, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
