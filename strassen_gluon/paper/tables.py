"""The paper's tables: their grids of cells, and the command line of each cell under a budget.

A cell is one command: ``python -m MODULE ARGV`` with its own ``--run_name``/``--log_dir``
under one output folder (the training commands, which write a run folder with summary.json), or
``python -m strassen_gluon.paper record FOLDER MODULE ARGV`` for the commands that write no run
folder (counting, the matmul search): the recorder keeps their output, exit status and time.

Grids (the coordinates are those of the published records, :mod:`.published`):

=========  ==================================================================================
counting   poster Table 1: ST-ResNet-18 against ResNet-18, r = 6, 4, 2, 1, 0.5 x c_out and
           (p, g) in {(1, 1), (2, 1), (1, 4)}: 15 counts, 45 reductions
cifar10    the dense twins resnet20 and vgg7, and st_resnet20 / st_vgg7 at r = 1, 0.5, 0.25 x
           c_out and p = 1, 2 (the notebook's cell is st_resnet20 r = c_out, p = 1)
imagenet   resnet18, st_resnet18 on the Table 1 grid, and the poster's distilled cells
ptb        the dense LM (quant_mode 5), and the Strassen LM (quant_mode 2) at r/n_out = 8, 6,
           4, 2, 1, 1/2, 1/4 for the highway and LSTM layers and r = 2000·r/n_out for the
           decoder, with and without distillation
matmul     2x2x2 at rank 7, one cell per seed
=========  ==================================================================================
"""
import os
import shlex
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

from ..errors import UsageError
from .budgets import BUDGETS

RECORDER = 'strassen_gluon.paper'
RESNET18_GRID = [(r, p, g) for r in (6, 4, 2, 1, 0.5) for p, g in ((1, 1), (2, 1), (1, 4))]
# The ICML poster's distilled ImageNet points (solid markers), as read off Fig. 2 into
# published.json; tests/test_paper.py checks that the file has exactly these.
IMAGENET_DISTILLED = [(4, 1, 1), (4, 2, 1), (2, 2, 1)]
CIFAR_GRID = [(r, p) for r in (1, 0.5, 0.25) for p in (1, 2)]
PTB_GRID = (8, 6, 4, 2, 1, 0.5, 0.25)
# The decoder's r scales with the budget: 2000·r/n_out (the authors' command's 2000 is the
# r/n_out = 1 point; Fig. 3's multiplications fit only this, docs/counting.md).
PTB_DECODER_R = 2000
MATMUL_FORMAT = (2, 2, 2, 7)
# Options of `python -m strassen_gluon.count` that count Table 1's network as the poster does
# (docs/counting.md): the paper's layout, an SPN classifier with r = 1000, the paper's
# convention. Render marks counts made without that convention.
COUNT_PAPER_OPTIONS = ('--set', 'layout=paper', '--set', 'out_nbr_mul=1000', '--convention',
                       'paper')


def num(value):
    """6 -> '6', 0.5 -> '0.5' (in cell names and command lines)."""
    return '%g' % value


@dataclass(frozen=True, eq=False)
class Point:
    """A cell of a grid before a budget is applied."""
    name: str
    model: str
    options: Tuple[str, ...]               # the command's options selecting the model
    coords: Dict[str, object]              # the cell's coordinates in the published records
    twin: Optional[str] = None             # the dense cell of a Strassen cell
    distill: bool = False
    model_kwargs: Dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Cell:
    table: str
    name: str
    module: str
    argv: Tuple[str, ...]
    folder: str
    point: Point
    after: Tuple[str, ...] = ()            # cells whose run folders this one reads
    recorded: bool = False                 # run through the recorder (no run folder)

    def command(self, argv=None):
        argv = list(self.argv if argv is None else argv)
        if self.recorded:
            return ['python', '-m', RECORDER, 'record', self.folder, self.module] + argv
        return ['python', '-m', self.module] + argv

    def line(self, argv=None):
        return shlex.join(self.command(argv))


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    module: str
    task: Optional[str]                    # the summaries' task (None: recorded cells)
    metrics: Tuple[str, ...]               # published metrics shown, the first one plotted
    coord_keys: Tuple[str, ...]
    grid: Callable[[], list]
    data: Callable[[Optional[str]], list] = lambda data_dir: []
    distill_axis: bool = False             # the grid has cells with and without distillation
    outcomes: Tuple[int, ...] = (0,)       # exit statuses of a recorded cell that are results
    # The input of a cell counted (shapes only) when neither a run nor the paper gives its
    # multiplications; None: not countable without the data (the language model's vocabulary).
    count_shape: Optional[Tuple[int, ...]] = None

    def points(self):
        return self.grid()

    def budgets(self):
        return BUDGETS[self.name]


# --------------------------------------------------------------------------------- grids

def _network_point(model, nbr_mul=None, out_patch=None, groups=None, distill=False):
    dense = not model.startswith('st_')
    options, kwargs, name = ['--model', model], {}, model
    for flag, value, short in (('nbr_mul', nbr_mul, 'r'), ('out_patch', out_patch, 'p'),
                               ('groups', groups, 'g')):
        if value is not None:
            options += ['--' + flag, num(value)]
            kwargs[flag] = value
            name += '%s%s%s' % ('-', short, num(value))
    coords = {'model': model, 'method': 'fp' if dense else 'strassen',
              'nbr_mul': None if dense else nbr_mul, 'out_patch': out_patch or 1,
              'groups': groups or 1, 'distill': distill}
    return Point(name + ('-kd' if distill else ''), model, tuple(options), coords,
                 twin=None if dense else model[3:], distill=distill, model_kwargs=kwargs)


def cifar_grid():
    points = [_network_point('resnet20'), _network_point('vgg7')]
    for model in ('st_resnet20', 'st_vgg7'):
        points += [_network_point(model, r, p) for r, p in CIFAR_GRID]
    return points


def imagenet_grid():
    points = [_network_point('resnet18')]
    points += [_network_point('st_resnet18', r, p, g) for r, p, g in RESNET18_GRID]
    points += [_network_point('st_resnet18', r, p, g, distill=True)
               for r, p, g in IMAGENET_DISTILLED]
    return points


def ptb_grid():
    dense = Point('charlm', 'charlm', ('--quant_mode', '5'),
                  {'model': 'charlm', 'method': 'fp', 'nbr_mul': None, 'distill': False})
    points = [dense]
    for distill in (False, True):
        for r in PTB_GRID:
            points.append(Point(
                'st_charlm-r%s%s' % (num(r), '-kd' if distill else ''), 'st_charlm',
                ('--quant_mode', '2', '--nbr_mul', num(r), '--out_nbr_mul',
                 str(int(PTB_DECODER_R * r))),
                {'model': 'st_charlm', 'method': 'strassen', 'nbr_mul': r, 'distill': distill},
                twin='charlm', distill=distill))
    return points


def counting_grid():
    return [Point('count-r%s-p%d-g%d' % (num(r), p, g), 'st_resnet18',
                  ('--model', 'st_resnet18', '--nbr_mul', num(r), '--out_patch', str(p),
                   '--groups', str(g), '--json') + COUNT_PAPER_OPTIONS,
                  {'model': 'st_resnet18', 'nbr_mul': r, 'out_patch': p, 'groups': g})
            for r, p, g in RESNET18_GRID]


def matmul_grid():
    m, k, n, rank = MATMUL_FORMAT
    return [Point('matmul-%dx%dx%d-rank%d' % MATMUL_FORMAT, 'matmul',
                  ('--m', str(m), '--k', str(k), '--n', str(n), '--rank', str(rank)),
                  {'m': m, 'k': k, 'n': n, 'rank': rank})]


def _data_dir_option(data_dir):
    return ['--data_dir', data_dir] if data_dir else []


IMAGENET_PLACEHOLDER = 'IMAGENET_DIR'


def _recordio(data_dir):
    folder = data_dir or IMAGENET_PLACEHOLDER
    return ['--train_rec', os.path.join(folder, 'train.rec'),
            '--val_rec', os.path.join(folder, 'val.rec')]


TABLES = {t.name: t for t in (
    Table('counting', 'Poster Table 1: ST-ResNet-18 against ResNet-18 (% reduction)',
          'strassen_gluon.count', None,
          ('mults_reduction_pct', 'adds_reduction_pct', 'size_reduction_pct'),
          ('model', 'nbr_mul', 'out_patch', 'groups'), counting_grid),
    Table('cifar10', 'CIFAR-10: ST-ResNet-20 and ST-VGG-7 against their dense twins',
          'strassen_gluon.cifar10', 'cifar10', ('val_acc',),
          ('model', 'method', 'nbr_mul', 'out_patch'), cifar_grid, _data_dir_option,
          count_shape=(1, 3, 32, 32)),
    Table('imagenet', 'ImageNet: ST-ResNet-18 (poster Fig. 2)', 'strassen_gluon.imagenet',
          'imagenet', ('top1', 'top5'),
          ('model', 'method', 'nbr_mul', 'out_patch', 'groups', 'distill'), imagenet_grid,
          _recordio, distill_axis=True, count_shape=(1, 3, 224, 224)),
    Table('ptb', 'Penn Treebank: the Strassen LM (poster Fig. 3)', 'langmod.train', 'langmod',
          ('test_ppl',), ('method', 'nbr_mul', 'distill'), ptb_grid,
          _data_dir_option, distill_axis=True),
    Table('matmul', 'Rediscovering Strassen: 2x2x2 at rank 7', 'strassen_gluon.matmul', None,
          (), (), matmul_grid, outcomes=(0, 1)),
)}
TASK_TABLES = {t.task: t.name for t in TABLES.values() if t.task}


def get_table(name):
    if name not in TABLES:
        raise UsageError('unknown table %r; the tables are %s' % (name, ', '.join(TABLES)))
    return TABLES[name]


def get_budget(table, name):
    budgets = table.budgets()
    if name not in budgets:
        raise UsageError('table %s has no budget %r; its budgets are %s'
                         % (table.name, name, ', '.join(budgets)))
    return budgets[name]


# --------------------------------------------------------------------------------- cells

def cells(table_name, budget_name, out, data_dir=None, extra=()):
    """The cells of a table under a budget, dependencies first; `extra` options are added to
    every command (e.g. ``--gpu_index 0,1``)."""
    table = get_table(table_name)
    budget = get_budget(table, budget_name)
    points = table.points()
    if budget.cells is not None:
        known = {p.name for p in points}
        unknown = [c for c in budget.cells if c not in known]
        if unknown:
            raise UsageError('budget %s of %s names unknown cells %s'
                             % (budget_name, table.name, ', '.join(unknown)))
        points = [p for p in points if p.name in budget.cells]
    if budget.dense is None:
        points = [p for p in points if p.twin is not None]
    seeds = budget.seeds or (None,)
    result = []
    for seed in seeds:
        suffix = '' if seed is None else '-seed%d' % seed
        for point in points:
            result.append(_cell(table, budget, point, point.name + suffix, seed, suffix, out,
                                data_dir, extra))
    names = {c.name for c in result}
    for c in result:
        missing = [d for d in c.after if d not in names]
        if missing:
            raise UsageError('cell %s needs %s, which budget %s does not train'
                             % (c.name, ', '.join(missing), budget_name))
    return sorted(result, key=lambda c: bool(c.after))  # stable: grid order within a stage


def _cell(table, budget, point, name, seed, suffix, out, data_dir, extra):
    folder = os.path.join(out, name)
    dense = point.twin is None
    argv = list(point.options) + list(budget.common)
    argv += list(budget.dense or () if dense else budget.strassen)
    argv += list(budget.by_model.get(point.model, ()))
    argv += table.data(data_dir)
    after = ()
    if not dense:
        twin_folder = os.path.join(out, point.twin + suffix)
        if budget.start == 'init_from':
            argv += ['--init_from', budget.source or twin_folder]
            after = () if budget.source else (point.twin + suffix,)
            if table.distill_axis and not point.distill:
                argv += ['--dist_lambda', '0']
        elif point.distill:
            argv += ['--teacher_model', twin_folder]
            after = (point.twin + suffix,)
    if seed is not None:
        argv += ['--seed', str(seed)]
    argv += list(extra)
    recorded = table.task is None
    if recorded:
        if table.name == 'matmul':
            argv += ['--json', os.path.join(folder, 'algorithm.json')]
    else:
        argv += ['--run_name', name, '--log_dir', out]
    return Cell(table.name, name, table.module, tuple(argv), folder, point, after, recorded)


# ---------------------------------------------------------------------- runs to cells

def experiment_coords(summary):
    """(table name, coordinates) of a finished run's summary, in the published records' terms;
    (None, {}) for a task without a paper table."""
    task, model, config = summary.get('task'), summary.get('model'), summary.get('config') or {}
    table = TASK_TABLES.get(task)
    if table is None:
        return None, {}
    distill = bool(config.get('teacher_model') or config.get('init_from')) \
        and (config.get('dist_lambda') or 0) > 0
    if task == 'langmod':
        mode = config.get('quant_mode')
        method = {2: 'strassen', 5: 'fp', 7: 'twn'}.get(mode, 'quant_mode %s' % mode)
        coords = {'model': model, 'method': method,
                  'nbr_mul': config.get('nbr_mul') if method == 'strassen' else None,
                  'distill': distill and method != 'fp'}
    else:
        dense = not str(model).startswith('st_')
        coords = {'model': model, 'method': 'fp' if dense else 'strassen',
                  'nbr_mul': None if dense else _or(config.get('nbr_mul'), 1.0),
                  'out_patch': 1 if dense else _or(config.get('out_patch'), 1),
                  'groups': 1 if dense else _or(config.get('groups'), 1),
                  'distill': distill and not dense}
    return table, {k: coords.get(k) for k in TABLES[table].coord_keys}


def _or(value, default):
    return default if value is None else value
