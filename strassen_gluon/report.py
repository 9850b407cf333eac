"""Tables and figures of finished runs, one row per experiment.

``python -m strassen_gluon.report RUNS_DIR [--out DIR]`` finds every ``summary.json`` below
RUNS_DIR (the run folder schema of :mod:`strassen_gluon.train.run`, written by all three training
commands) and writes ``report.md`` (one table per task) and one figure per task, ``<task>.png``
(the metric against multiplications on a log axis, the paper's points beneath).

An **experiment** is everything that defines a run: the task, the model and the stored
configuration except the fields in ``BOOKKEEPING`` (the seed, and options that name or
steer an invocation without changing what is trained: run_name, log_dir, resume, quiet, devices,
keep_checkpoints, stop_after_epochs, sync_every, print_every, num_workers, download). So runs
with another data subset, schedule, budget, dtype or start (``init_from``) are different
experiments and never share a row. A run folder named by ``init_from`` or ``teacher_model``
stands for its own experiment (found as given, or as a sibling of the run folder), so students
of different seeds of one dense experiment are seeds of one experiment too.

Runs of one experiment are averaged across **distinct seeds** only (mean ± sample std, n seeds;
a converted run's seed includes its source run's seed). Runs that repeat a seed are not
averaged: the newest counts, and the row says which runs repeated it.

Each Strassen experiment is compared with a full-precision experiment of **the same
architecture** (st_resnet20 with resnet20, st_vgg7 with vgg7, st_charlm with charlm; never
another one): the one it was converted from or taught by if that is in the report, else the one
sharing most of its configuration. Rows show the paper's value of the same cell where one is
published (:mod:`strassen_gluon.paper.published`).

What it reads from a summary (the schema of ``train.run``; other files are skipped with a
warning): ``task``, ``model``, ``config``, ``metrics`` (val_acc for CIFAR-10, top1 and top5 for
ImageNet, both shown in %; test_ppl for the language model), ``cost`` (mults, adds, bits per
image or per time step), ``finished``, ``run_dir``.

Figures use ``matplotlib.figure.Figure`` directly (no pyplot), so this works inside Jupyter.
"""
import hashlib
import json
import os
import statistics
import sys
import warnings

from matplotlib.figure import Figure

from . import cli
from .counting import human
from .errors import DataError, RunFolderError, UsageError
from .files import require_writable
from .paper.published import describe as describe_paper, load_published, paper_value
from .paper.tables import experiment_coords
from .train.run import CONFIG_NAME, SUMMARY_NAME, read_summary

SUMMARY = SUMMARY_NAME
TASK_METRICS = {'cifar10': ('val_acc',), 'imagenet': ('top1', 'top5'), 'langmod': ('test_ppl',)}
COUNT_KEYS = ('mults', 'adds', 'bits')
TASK_TITLES = {'cifar10': 'CIFAR-10', 'langmod': 'Penn Treebank', 'imagenet': 'ImageNet'}
# Configuration fields that do not define an experiment (see the module docstring).
BOOKKEEPING = ('seed', 'run_name', 'log_dir', 'resume', 'quiet', 'devices', 'keep_checkpoints',
               'stop_after_epochs', 'sync_every', 'print_every', 'num_workers', 'download')
# Options added after runs were stored, with the value those runs had in effect: a run that
# has one at that value is the same experiment as an older run without it.
ADDED_OPTIONS = {'freeze_wc': False}
# Fields naming another run folder: replaced by that run's experiment.
SOURCE_KEYS = ('init_from', 'teacher_model')
# Shown in every label when set (the budget); other fields only where experiments differ.
BUDGET_KEYS = ('nbr_mul', 'out_patch', 'groups', 'out_nbr_mul', 'quant_mode')
LABEL_NAMES = {'out_patch': 'p', 'groups': 'g'}


# ------------------------------------------------------------------------- reading runs

def metric_kind(name):
    return 'perplexity' if name.endswith('ppl') else 'accuracy'


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _find_source(path, run_dir):
    """The run folder a stored init_from / teacher_model names: as given, else a sibling of
    `run_dir` with the same name (run folders moved together); None if neither exists."""
    for candidate in (path, os.path.join(os.path.dirname(run_dir), os.path.basename(
            os.path.normpath(path)))):
        if os.path.isfile(os.path.join(candidate, CONFIG_NAME)):
            return candidate
    return None


def experiment_of(config, run_dir, depth=0):
    """(experiment key, seed identity) of a stored configuration: the key is the configuration
    without BOOKKEEPING fields, a source run folder replaced by {'run': its model, 'experiment':
    its key}; the seed identity is the seed, with the sources' seeds appended."""
    key = {k: v for k, v in config.items()
           if k not in BOOKKEEPING and not (k in ADDED_OPTIONS and v == ADDED_OPTIONS[k])}
    seed = [str(config.get('seed'))]
    for name in SOURCE_KEYS:
        path = config.get(name)
        if not isinstance(path, str) or ':' in path or depth > 3:
            continue  # unset, or gluoncv:NAME (the same weights for everyone)
        folder = _find_source(path, run_dir)
        stored = _read_json(os.path.join(folder, CONFIG_NAME)) if folder else None
        if not stored or not isinstance(stored.get('config'), dict):
            key[name] = os.path.normpath(path)
            continue
        source_key, source_seed = experiment_of(stored['config'], folder, depth + 1)
        key[name] = {'run': stored.get('model') or stored['config'].get('model'),
                     'experiment': experiment_id(stored.get('task'), source_key)}
        seed.append('%s %s' % (name, source_seed))
    return key, ', '.join(seed)


def experiment_id(task, key):
    """A short stable name of an experiment (its key hashed)."""
    text = json.dumps([task, key], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:6]


def read_run(summary, path=''):
    """One run's record from its summary (schema of strassen_gluon.train.run), or None."""
    task, model = summary['task'], summary['model']
    names = TASK_METRICS.get(task, (summary['primary_metric'],))
    metrics = {}
    for name in names:
        value = summary['metrics'].get(name)
        if isinstance(value, (int, float)):
            metrics[name] = float(value) * (100 if metric_kind(name) == 'accuracy' else 1)
    if names[0] not in metrics:
        warnings.warn('%s: no %s in its metrics; skipped' % (path, names[0]))
        return None
    config = dict(summary.get('config') or {})
    config.setdefault('model', model)
    run_dir = os.path.dirname(path) or summary.get('run_dir', '')
    key, seed = experiment_of(config, run_dir)
    cost = summary.get('cost') or {}
    counts = {k: cost[k] for k in COUNT_KEYS} if all(k in cost for k in COUNT_KEYS) else None
    return {'path': path, 'task': task, 'model': model, 'key': key, 'seed': seed,
            'metrics': metrics, 'metric_name': names[0], 'counts': counts,
            'finished': summary.get('finished') or '', 'summary': summary,
            'baseline': not str(model).startswith('st_')}


def load_runs(runs_dir):
    """Records of every finished run below `runs_dir` (folders holding a summary.json)."""
    runs = []
    for folder, _, files in sorted(os.walk(runs_dir)):
        if SUMMARY not in files:
            continue
        path = os.path.join(folder, SUMMARY)
        try:
            summary = read_summary(path)
        except RunFolderError as err:
            warnings.warn('%s; skipped' % err)
            continue
        run = read_run(summary, path)
        if run is not None:
            runs.append(run)
    return runs


# ------------------------------------------------------------------------- grouping

def dense_twin(model):
    """The full-precision architecture an st_ model is compared with (None for a dense one)."""
    return model[3:] if model.startswith('st_') else None


def group_runs(runs, published=()):
    """{task: [experiment]}: the runs of each experiment merged across distinct seeds."""
    groups = {}
    for run in runs:
        ident = experiment_id(run['task'], run['key'])
        groups.setdefault((run['task'], ident), []).append(run)
    tasks = {}
    for (task, ident), members in groups.items():
        tasks.setdefault(task, []).append(_experiment(task, ident, members, published))
    for experiments in tasks.values():
        _label(experiments)
        _attach_references(experiments)
        experiments.sort(key=lambda e: (dense_twin(e['model']) or e['model'], not e['baseline'],
                                        -(e['counts'] or {}).get('mults', 0), e['label']))
    return tasks


def _experiment(task, ident, members, published):
    by_seed = {}
    for run in members:
        by_seed.setdefault(run['seed'], []).append(run)
    used, repeats = [], {}
    for seed, runs in sorted(by_seed.items()):
        runs.sort(key=lambda r: (r['finished'], r['path']))
        used.append(runs[-1])  # the newest run of a seed counts
        if len(runs) > 1:
            repeats[seed] = runs
    first = used[0]
    stats = {}
    for name in TASK_METRICS.get(task, (first['metric_name'],)):
        values = [r['metrics'][name] for r in used if name in r['metrics']]
        if values:
            stats[name] = (statistics.fmean(values),
                           statistics.stdev(values) if len(values) > 1 else 0.0, len(values))
    table, coords = experiment_coords(first['summary'])
    paper = {name: paper_value(published, table, coords, name) for name in stats} \
        if table else {}
    return {'id': ident, 'task': task, 'model': first['model'], 'key': first['key'],
            'baseline': first['baseline'], 'runs': used, 'repeats': repeats,
            'seeds': [r['seed'] for r in used], 'stats': stats,
            'metric_name': first['metric_name'],
            'counts': next((r['counts'] for r in used if r['counts']), None),
            'table': table, 'coords': coords, 'paper': paper}


def _value_text(value):
    if isinstance(value, dict) and 'run' in value:
        return '%s run [%s]' % (value['run'], value['experiment'])
    if isinstance(value, (list, tuple)):
        return ','.join(_value_text(v) for v in value)
    return '%g' % value if isinstance(value, float) else str(value)


def budget_label(key, baseline=False, others=()):
    """'nbr_mul=2, p=2' for the budget keys set in `key` (not for a full-precision model,
    whose configuration may hold unused ones), the run it started from or learnt from, then the
    fields `others` as key=value; 'full precision' / 'model defaults' when there is nothing
    to say."""
    shown = [k for k in BUDGET_KEYS if key.get(k) is not None and not baseline] + \
        [k for k in SOURCE_KEYS if key.get(k)] + \
        sorted(k for k in others if k not in BUDGET_KEYS + SOURCE_KEYS and k != 'model')
    if not shown:
        return 'full precision' if baseline else 'model defaults'
    return ', '.join('%s=%s' % (LABEL_NAMES.get(k, k), _value_text(key.get(k))) for k in shown)


def _label(experiments):
    """Label each experiment by its budget and by the fields that differ from the other
    experiments of the same model."""
    by_model = {}
    for e in experiments:
        by_model.setdefault(e['model'], []).append(e)
    for group in by_model.values():
        fields = {k for e in group for k in e['key']}
        varying = [k for k in fields if len({json.dumps(e['key'].get(k), sort_keys=True)
                                             for e in group}) > 1]
        for e in group:
            e['label'] = budget_label(e['key'], e['baseline'], varying)


def _attach_references(experiments):
    """Each Strassen experiment's full-precision experiment of the same architecture (or
    None): the run it was converted from or taught by, else the one sharing most fields."""
    for e in experiments:
        twin = dense_twin(e['model'])
        candidates = [d for d in experiments if d['baseline'] and d['model'] == twin]
        e['reference'] = e if e['baseline'] else None
        if e['baseline'] or not candidates:
            continue
        sources = {e['key'][k]['experiment'] for k in SOURCE_KEYS
                   if isinstance(e['key'].get(k), dict)}
        linked = [d for d in candidates if d['id'] in sources]
        e['reference'] = linked[0] if linked else max(
            candidates, key=lambda d: (sum(1 for k, v in d['key'].items()
                                           if e['key'].get(k) == v), d['id']))


def reduction_percent(reference, counts, key):
    """100·(1 - counts/reference) for key, or None if either is unknown."""
    if not reference or not counts or not reference.get(key):
        return None
    return 100.0 * (1.0 - counts[key] / reference[key])


# ------------------------------------------------------------------------- Markdown

def metric_text(stat, digits=2):
    """'91.20' or '91.20 ± 0.31 (n=3)' from (mean, std, n)."""
    mean, std, n = stat
    return '%.*f' % (digits, mean) + (' ± %.*f (n=%d)' % (digits, std, n) if n > 1 else '')


def repeat_notes(experiment):
    """'seed 321 ran 2×: 35.10, 36.20 (the newest counted)' per repeated seed."""
    name = experiment['metric_name']
    return ['seed %s ran %d×: %s (the newest counted)'
            % (seed, len(runs), ', '.join('%.2f' % r['metrics'][name] for r in runs))
            for seed, runs in experiment['repeats'].items()]


def versus_dense(experiment, name=None):
    """The metric's difference to the full-precision experiment of the same architecture."""
    name = name or experiment['metric_name']
    reference = experiment['reference']
    if experiment['baseline']:
        return 'reference'
    if reference is None:
        return 'no %s run' % dense_twin(experiment['model'])
    if name not in reference['stats'] or name not in experiment['stats']:
        return '—'
    return '%+.2f vs [%s]' % (experiment['stats'][name][0] - reference['stats'][name][0],
                               reference['id'])


def _reduction_cell(experiment, key):
    if experiment['baseline']:
        return 'reference'
    reference = (experiment['reference'] or {}).get('counts')
    pct = reduction_percent(reference, experiment['counts'], key)
    if pct is None:
        return '—'
    factor = reference[key] / experiment['counts'][key] if experiment['counts'][key] \
        else float('inf')
    return '%.2f%% (x%.3g)' % (pct, factor)


def markdown_table(task, experiments):
    name = experiments[0]['metric_name']
    unit = ' (%)' if metric_kind(name) == 'accuracy' else ''
    per = ' per time step' if metric_kind(name) == 'perplexity' else ' per image'
    lines = ['## %s' % TASK_TITLES.get(task, task), '',
             'One row per experiment (runs that differ only in their seed); mean ± std over '
             'distinct seeds. Counts%s (`strassen_gluon.counting` conventions; size in MB = 10^6 '
             'bytes); "vs dense" and the reductions are relative to the full-precision '
             'experiment of the same architecture.' % per, '',
             '| id | model | experiment | %s%s | paper | vs dense | mults | adds | size (MB) | '
             'mults vs FP | size vs FP | notes |' % (name, unit),
             '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|']
    for e in experiments:
        counts = e['counts']
        lines.append('| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
            e['id'], e['model'] + (' (FP)' if e['baseline'] else ''), e['label'],
            metric_text(e['stats'][name]), describe_paper(e['paper'].get(name)),
            versus_dense(e), human(counts['mults']) if counts else '—',
            human(counts['adds']) if counts else '—',
            '%.3f' % (counts['bits'] / 8e6) if counts else '—',
            _reduction_cell(e, 'mults'), _reduction_cell(e, 'bits'),
            '; '.join(repeat_notes(e))))
    return '\n'.join(lines) + '\n'


def markdown_report(tasks, figures=None):
    parts = ['# StrassenNets results', '']
    for task in sorted(tasks):
        parts.append(markdown_table(task, tasks[task]))
        if figures and task in figures:
            parts.append('![%s](%s)\n' % (TASK_TITLES.get(task, task),
                                          os.path.basename(figures[task])))
    return '\n'.join(parts)


# ------------------------------------------------------------------------- figures

MARKERS = 'oD^vs<>phX8P'
# The paper's points: hollow, pale, beneath this project's filled markers.
PAPER_COLOURS = ('tab:blue', 'tab:green', 'tab:red', 'tab:purple', 'tab:brown', 'tab:olive',
                 'tab:cyan', 'tab:pink', 'tab:gray')


def metric_figure(title, panels, xlabel='multiplications'):
    """A Figure of metric panels against multiplications (log x), in the posters' form.

    `panels`: [(y label, layers)], a layer a dict with ``kind`` ('paper': hollow grey markers
    beneath; 'ours': filled markers with error bars on top; 'dense': a star and a dotted
    horizontal line; 'missing': a red x on the bottom edge at the cell's multiplications),
    ``label`` and ``points`` [(x, y, yerr)] (y is ignored for 'missing').
    """
    fig = Figure(figsize=(6.6, 4.4 * len(panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (ylabel, layers) in zip(axes, panels):
        ours = paper = 0
        for layer in layers:
            pts = [p for p in layer['points'] if p[0] and p[0] > 0]
            if not pts:
                continue
            xs = [p[0] for p in pts]
            kind = layer['kind']
            if kind == 'missing':
                ax.plot(xs, [0.02] * len(xs), 'x', color='red', markersize=9, clip_on=False,
                        transform=ax.get_xaxis_transform(), label=layer['label'], zorder=4)
                continue
            ys, errs = [p[1] for p in pts], [p[2] or 0 for p in pts]
            if kind == 'paper':
                ax.plot(xs, ys, linestyle=layer.get('linestyle', 'none'),
                        marker=layer.get('marker', 'o'), markerfacecolor='none',
                        color=PAPER_COLOURS[paper % len(PAPER_COLOURS)], alpha=0.6,
                        label=layer['label'], zorder=2)
                paper += 1
            elif kind == 'dense':
                ax.errorbar(xs, ys, yerr=errs if any(errs) else None, marker='*',
                            markersize=14, color='black', linestyle='none', capsize=3,
                            label=layer['label'], zorder=5)
                for y in ys:
                    ax.axhline(y, color='black', linestyle=':', linewidth=1)
            else:
                ax.errorbar(xs, ys, yerr=errs if any(errs) else None,
                            marker=MARKERS[ours % len(MARKERS)], linestyle='none', capsize=3,
                            label=layer['label'], zorder=6)
                ours += 1
        ax.set_xscale('log')
        ax.set_ylabel(ylabel)
        ax.grid(True, which='both', alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize='x-small', ncol=2)
    axes[0].set_title(title)
    axes[-1].set_xlabel(xlabel)
    fig.tight_layout()
    return fig


def metric_axis_label(name):
    return name + (' (%)' if metric_kind(name) == 'accuracy' else '')


def experiment_layer(experiment, name, label=None):
    """A figure layer of one experiment's mean (and std) of metric `name`."""
    mean, std, n = experiment['stats'][name]
    x = (experiment['counts'] or {}).get('mults')
    return {'kind': 'dense' if experiment['baseline'] else 'ours',
            'label': label or '%s, %s' % (experiment['model'], experiment['label']),
            'points': [(x, mean, std if n > 1 else None)]}


PAPER_MARKERS = {'fp': '*', 'twn': 'v', 'ttq': '^', 'bwn': '<'}


def paper_layers(records, name):
    """Layers of the published figure points (records with ``mults``) of metric `name`: one
    per baseline method, and one line per Strassen series (p, g; dotted with distillation)."""
    series = {}
    for r in records:
        if r['metric'] != name or not r.get('mults'):
            continue
        method = r.get('method') or 'strassen'
        if method == 'strassen':
            p, g = r.get('out_patch'), r.get('groups')
            label = 'paper%s%s' % (' p=%s, g=%s' % (p, g) if p and g else '',
                                   ' + KD' if r.get('distill') else '')
            style = ('s' if r.get('distill') else 'o', ':' if r.get('distill') else '-')
        else:
            label, style = 'paper: %s' % method, (PAPER_MARKERS.get(method, 'o'), 'none')
        series.setdefault((label, style), []).append((r['mults'], r['value'], None))
    return [{'kind': 'paper', 'label': label, 'points': sorted(points), 'marker': marker,
             'linestyle': line}
            for (label, (marker, line)), points in sorted(series.items())]


def figure(task, experiments, published=()):
    """The report's Figure of one task: every experiment over the paper's points."""
    table = experiments[0]['table']
    records = [r for r in published if r['table'] == table]
    panels = []
    for name in TASK_METRICS.get(task, (experiments[0]['metric_name'],)):
        layers = paper_layers(records, name)
        layers += [experiment_layer(e, name) for e in experiments if name in e['stats']]
        panels.append((metric_axis_label(name), layers))
    per = ' per time step' if task == 'langmod' else ' per image'
    return metric_figure(TASK_TITLES.get(task, task), panels, 'multiplications' + per)


def save_figure(fig, path):
    fig.savefig(path, dpi=110)
    return path


def write_report(runs_dir, out_dir=None, published=None):
    """Write report.md and one <task>.png per task into out_dir (default runs_dir).

    Returns (markdown text, {task: png path}).
    """
    out_dir = out_dir or runs_dir
    require_writable(out_dir, '--out', folder=True)
    os.makedirs(out_dir, exist_ok=True)
    published = load_published() if published is None else published
    tasks = group_runs(load_runs(runs_dir), published)
    figures = {task: save_figure(figure(task, experiments, published),
                                 os.path.join(out_dir, '%s.png' % task))
               for task, experiments in tasks.items()}
    text = markdown_report(tasks, figures)
    with open(os.path.join(out_dir, 'report.md'), 'w') as f:
        f.write(text)
    return text, figures


def parse_args(argv=None):
    parser = cli.Parser(
        prog='python -m strassen_gluon.report',
        description='Tables (Markdown) and figures (PNG) of finished runs, one row per '
                    'experiment: accuracy or perplexity against multiplications, additions and '
                    'model size, beside the paper\'s values. Exit status 0, 1 (no runs, or '
                    '--out cannot be written), 2 (usage).')
    parser.add_argument('runs_dir', help='folder searched for run folders with summary.json')
    parser.add_argument('--out', help='where report.md and the PNGs go (default RUNS_DIR)')
    return parser.parse_args(argv)


def report(args):
    if not os.path.isdir(args.runs_dir):
        raise UsageError('%s is not a folder' % args.runs_dir)
    text, figures = write_report(args.runs_dir, args.out)
    if not figures:
        raise DataError('no finished run (summary.json) found below %s' % args.runs_dir)
    print(text)
    print('wrote %s' % ', '.join([os.path.join(args.out or args.runs_dir, 'report.md')]
                                 + sorted(figures.values())), file=sys.stderr)


def main(argv=None):
    """Returns the exit status (0 written; 1 no runs or --out not writable; 2 usage)."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_:
        return exit_.code
    return cli.run_command(report, args)


if __name__ == '__main__':
    sys.exit(main())
