"""The command line: python -m strassen_gluon.paper {list, plan, run, render, record}.

    python -m strassen_gluon.paper list
    python -m strassen_gluon.paper plan cifar10 --budget cpu [--out DIR] [--missing] [-- OPTIONS]
    python -m strassen_gluon.paper run cifar10 --budget cpu [--out DIR] [--data_dir DIR]
    python -m strassen_gluon.paper render cifar10 --runs DIR [--out DIR]
    python -m strassen_gluon.paper record FOLDER MODULE OPTIONS...   (a plan line of counting,
                                                                      matmul)

Options after ``--`` go to every cell's command (e.g. ``-- --gpu_index 0,1``). Exit statuses:
0 done, 1 a cell failed / data or output folder unusable, 2 usage, 130 interrupted.
"""
import os
import sys

from .. import cli
from ..errors import UsageError
from ..files import require_writable
from .budgets import BUDGETS
from .render import render as render_table
from .runner import cell_argv, cell_state, record, run_cells
from .tables import IMAGENET_PLACEHOLDER, TABLES, cells, get_budget, get_table

DEFAULT_OUT = os.path.join('runs', 'paper')


def build_parser():
    p = cli.Parser(
        prog='python -m strassen_gluon.paper',
        description='The paper\'s tables as commands: list them, print one command line per '
                    'cell (plan), run the missing cells here (run), and render a table from '
                    'finished runs beside the paper\'s values (render). Options after -- go to '
                    'every cell\'s command. "record FOLDER MODULE OPTIONS" runs a counting or '
                    'matmul cell (its plan line) and keeps its output, exit status and time.')
    sub = p.add_subparsers(dest='action', required=True, metavar='ACTION')
    sub.add_parser('list', help='the tables and their budgets')
    for action, text in (('plan', 'print one shell command line per cell'),
                         ('run', 'run the unfinished cells here, one after another')):
        a = sub.add_parser(action, help=text)
        a.add_argument('table', help=', '.join(TABLES))
        a.add_argument('--budget', required=True, help='paper, cpu or smoke (see list)')
        a.add_argument('--out', default=None,
                       help='folder of the cells\' run folders (default %s)'
                            % os.path.join(DEFAULT_OUT, '<table>-<budget>'))
        a.add_argument('--data_dir', default=None,
                       help='the data: CIFAR-10 python batches, the PTB text files, or the '
                            'folder holding ImageNet\'s train.rec and val.rec (default: each '
                            'command\'s own)')
        a.add_argument('--cell', action='append', default=None, metavar='NAME',
                       help='%s only this cell (repeatable)' % action)
        if action == 'plan':
            a.add_argument('--missing', action='store_true',
                           help='only the cells without a finished run in --out (partial ones '
                                'with --resume)')
    r = sub.add_parser('render', help='Markdown and PNG of a table from finished runs')
    r.add_argument('table', help=', '.join(TABLES))
    r.add_argument('--runs', required=True, help='folder searched for finished runs')
    r.add_argument('--out', default=None, help='where <table>.md and <table>.png go '
                                               '(default --runs)')
    return p


def split_extra(argv):
    """(the paper command's arguments, the options after -- for every cell)."""
    argv = list(argv)
    if '--' in argv:
        i = argv.index('--')
        return argv[:i], argv[i + 1:]
    return argv, []


def out_folder(args):
    return args.out or os.path.join(DEFAULT_OUT, '%s-%s' % (args.table, args.budget))


def table_cells(args, extra):
    """The table's cells at the budget, only those named by --cell when it is given."""
    chosen = cells(args.table, args.budget, out_folder(args), args.data_dir, extra)
    if args.cell:
        names = {c.name for c in chosen}
        unknown = [n for n in args.cell if n not in names]
        if unknown:
            raise UsageError('no cell %s in %s at budget %s; its cells: %s' % (
                ', '.join(unknown), args.table, args.budget, ', '.join(sorted(names))))
        chosen = [c for c in chosen if c.name in args.cell]
    return chosen


def say(text):
    print(text, flush=True)


def list_tables(args, extra):
    for table in TABLES.values():
        say('%-9s %s' % (table.name, table.title))
        for name, budget in BUDGETS[table.name].items():
            n = len(cells(table.name, name, '.'))
            say('  %-6s %3d cell%s  %s' % (name, n, ' ' if n == 1 else 's', budget.description))


def plan(args, extra):
    table = get_table(args.table)
    budget = get_budget(table, args.budget)
    chosen = table_cells(args, extra)
    say('# %s, budget %s (%s): %d cell%s under %s'
        % (table.name, args.budget, budget.description, len(chosen),
           '' if len(chosen) == 1 else 's', out_folder(args)))
    if table.name == 'imagenet' and not args.data_dir:
        say('# %s: the folder holding train.rec and val.rec (or give --data_dir)'
            % IMAGENET_PLACEHOLDER)
    stage = None
    for cell in chosen:
        state = cell_state(cell) if args.missing else 'new'
        if state == 'done':
            continue
        if stage != bool(cell.after):
            stage = bool(cell.after)
            say('# stage %d: %s' % (2 if stage else 1, 'after the stage-1 cell each names '
                                    '(--init_from / --teacher_model)' if stage
                                    else 'independent cells'))
        say(cell.line(cell_argv(cell, state)))


def run(args, extra):
    chosen = table_cells(args, extra)
    if args.table == 'imagenet' and not args.data_dir:
        raise UsageError('run imagenet needs --data_dir: the folder holding train.rec and '
                         'val.rec (RecordIO files, see docs/paper.md)')
    require_writable(out_folder(args), '--out', folder=True)
    return run_cells(chosen, say=say)


def render(args, extra):
    if extra:
        raise UsageError('render takes no options after --')
    if not os.path.isdir(args.runs):
        raise UsageError('--runs %s is not a folder' % args.runs)
    text, paths = render_table(args.table, args.runs, args.out or args.runs)
    say(text)
    print('wrote %s' % ', '.join(paths), file=sys.stderr)


def record_command(argv):
    """python -m strassen_gluon.paper record FOLDER MODULE OPTIONS..."""
    if len(argv) < 2:
        print('usage: python -m strassen_gluon.paper record FOLDER MODULE [OPTIONS...]',
              file=sys.stderr)
        return 2
    folder, module, options = argv[0], argv[1], argv[2:]

    def go():
        require_writable(folder, 'record FOLDER', folder=True)
        return record(folder, module, options)
    return exit_status(go)


def exit_status(fn):
    """`fn()`'s own exit status, or that of the library error it raised (cli.run_command)."""
    returned = []
    code = cli.run_command(lambda: returned.append(fn()))
    return code or (returned[0] if returned and returned[0] else 0)


ACTIONS = {'list': list_tables, 'plan': plan, 'run': run, 'render': render}


def main(argv=None):
    """Returns the exit status (0 done; 1 a cell failed, data or output unusable; 2 usage;
    130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['record']:
        return record_command(argv[1:])
    own, extra = split_extra(argv)
    try:
        args = build_parser().parse_args(own)
    except SystemExit as exit_:
        return exit_.code
    return exit_status(lambda: ACTIONS[args.action](args, extra))
