"""The paper's tables and figures from a folder of finished runs.

``python -m strassen_gluon.report RUNS_DIR`` finds every ``summary.json`` below RUNS_DIR (the run
folder schema of :mod:`strassen_gluon.train.run`, written by all three training commands),
groups the runs by task and by configuration (model and budget; several seeds of one
configuration become mean ± std), and writes ``report.md`` (one table per task: the metric
against multiplications, additions and model size, with the reduction relative to the
full-precision model) and one figure per task, ``<task>.png`` (the metric against
multiplications on a log axis, one marker per budget, the full-precision model marked).

What it reads from a summary (schema version ``SCHEMA_VERSION``; other files are skipped with a
warning):

=============  ===========================================================================
field          summary keys
=============  ===========================================================================
task           ``task``: cifar10, imagenet, langmod
model          ``model``
budget         ``model_kwargs`` (plus ``config.quant_mode`` for the language model); runs with
               equal model and budget are seeds of one configuration. Tables show the budget
               keys and the other options that differ between a task's configurations
metric         ``metrics[TASK_METRIC[task]]``: val_acc (CIFAR-10), top1 (ImageNet), both shown
               in %; test_ppl (the language model)
counts         ``cost``: mults, adds, bits (per image, or per time step for the LM)
baseline       the model has no SPN layers (its name does not start with ``st_``)
=============  ===========================================================================

The reduction of a Strassen run is relative to the full-precision run of the same architecture
(its model name without ``st_``), or to the task's only full-precision model.

Figures use ``matplotlib.figure.Figure`` directly (no pyplot), so this works inside Jupyter.
"""
import argparse
import json
import math
import os
import statistics
import sys
import warnings

from matplotlib.figure import Figure

from .count import human
from .errors import RunFolderError
from .train.run import SCHEMA_VERSION, SUMMARY_NAME, read_summary

SUMMARY = SUMMARY_NAME
TASK_METRIC = {'cifar10': 'val_acc', 'imagenet': 'top1', 'langmod': 'test_ppl'}
BUDGET_KEYS = ('nbr_mul', 'out_patch', 'groups', 'out_nbr_mul', 'quant_mode')
COUNT_KEYS = ('mults', 'adds', 'bits')
TASK_TITLES = {'cifar10': 'CIFAR-10', 'langmod': 'Penn Treebank', 'imagenet': 'ImageNet'}
BUDGET_LABELS = {'nbr_mul': 'nbr_mul', 'out_patch': 'p', 'groups': 'g',
                 'out_nbr_mul': 'out_nbr_mul', 'quant_mode': 'quant_mode'}


# ------------------------------------------------------------------------- reading runs

def read_run(summary, path=''):
    """One run's record from its summary (schema of strassen_gluon.train.run)."""
    task, model = summary['task'], summary['model']
    name = TASK_METRIC.get(task, summary['primary_metric'])
    value = summary['metrics'].get(name)
    if value is None:
        warnings.warn('%s: no %s in its metrics; skipped' % (path, name))
        return None
    budget = {k: v for k, v in summary.get('model_kwargs', {}).items() if v is not None}
    if task == 'langmod':
        budget['quant_mode'] = summary['config']['quant_mode']
        budget.pop('phase', None)  # follows from quant_mode
    metric = 'perplexity' if name.endswith('ppl') else 'accuracy'
    value = float(value) * (100 if metric == 'accuracy' else 1)
    cost = summary.get('cost') or {}
    counts = {k: cost[k] for k in COUNT_KEYS} if all(k in cost for k in COUNT_KEYS) else None
    return {'path': path, 'task': task, 'model': model, 'budget': budget, 'metric': metric,
            'metric_name': name, 'value': value, 'counts': counts,
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

def group_runs(runs):
    """{task: [configuration]}: runs of one model and budget merged (mean, std over seeds)."""
    groups = {}
    for run in runs:
        key = (run['task'], run['model'], json.dumps(run['budget'], sort_keys=True))
        groups.setdefault(key, []).append(run)
    tasks = {}
    for (task, model, _), members in groups.items():
        values = [m['value'] for m in members]
        counts = next((m['counts'] for m in members if m['counts']), None)
        tasks.setdefault(task, []).append({
            'task': task, 'model': model, 'budget': members[0]['budget'],
            'metric': members[0]['metric'], 'metric_name': members[0]['metric_name'], 'mean': statistics.fmean(values),
            'std': statistics.stdev(values) if len(values) > 1 else 0.0, 'n': len(values),
            'counts': counts, 'baseline': members[0]['baseline'],
            'paths': [m['path'] for m in members]})
    for configs in tasks.values():
        _attach_baselines(configs)
        # Options that are the same for every configuration of the task are not worth a label.
        options = {k for c in configs for k in c['budget']}
        varying = [k for k in sorted(options) if len({json.dumps(c['budget'].get(k))
                                                      for c in configs}) > 1]
        for c in configs:
            c['label'] = budget_label(c['budget'], c['baseline'], varying)
        configs.sort(key=lambda c: (not c['baseline'], c['model'],
                                    -(c['counts'] or {}).get('mults', 0)))
    return tasks


def _attach_baselines(configs):
    """Give each configuration the full-precision configuration it is compared with."""
    baselines = [c for c in configs if c['baseline']]
    by_model = {c['model']: c for c in baselines}
    for config in configs:
        model = config['model']
        reference = by_model.get(model[3:] if model.startswith('st_') else model)
        if reference is None and len(baselines) == 1:
            reference = baselines[0]
        config['reference'] = reference


def reduction_percent(reference, counts, key):
    """100·(1 - counts/reference) for key, or None if either is unknown."""
    if not reference or not counts or not reference.get(key):
        return None
    return 100.0 * (1.0 - counts[key] / reference[key])


# ------------------------------------------------------------------------- Markdown

def _value_text(value):
    if isinstance(value, (list, tuple)):
        return ','.join(_value_text(v) for v in value)
    return '%g' % value if isinstance(value, float) else str(value)


def budget_label(budget, baseline=False, others=None):
    """'nbr_mul=2, p=2' for the budget keys, then the options `others` (default: all) as
    key=value."""
    keys = [k for k in BUDGET_LABELS if k in budget] + \
        sorted(k for k in budget if k not in BUDGET_LABELS and (others is None or k in others))
    if not keys:
        return 'full precision' if baseline else 'model defaults'
    return ', '.join('%s=%s' % (BUDGET_LABELS.get(k, k), _value_text(budget[k])) for k in keys)


def _metric_cell(config):
    digits = 2
    text = '%.*f' % (digits, config['mean'])
    if config['n'] > 1:
        text += ' ± %.*f (n=%d)' % (digits, config['std'], config['n'])
    return text


def _reduction_cell(config, key):
    if config['baseline']:
        return 'reference' if config['reference'] is config else '—'
    reference = (config['reference'] or {}).get('counts')
    pct = reduction_percent(reference, config['counts'], key)
    if pct is None:
        return '—'
    factor = reference[key] / config['counts'][key] if config['counts'][key] else math.inf
    return '%.2f%% (x%.3g)' % (pct, factor)


def markdown_table(task, configs):
    metric = configs[0]['metric']
    metric_title = ('%s (%%)' if metric == 'accuracy' else '%s') % configs[0]['metric_name']
    per = ' per time step' if metric == 'perplexity' else ' per image'
    lines = ['## %s' % TASK_TITLES.get(task, task), '',
             'Counts%s (`strassen_gluon.count` conventions; size in MB = 10^6 bytes); '
             'reductions relative to the full-precision model of the same architecture.' % per,
             '',
             '| model | budget | %s | mults | adds | size (MB) | mults vs FP | size vs FP |'
             % metric_title,
             '|---|---|---:|---:|---:|---:|---:|---:|']
    for c in configs:
        counts = c['counts']
        lines.append('| %s | %s | %s | %s | %s | %s | %s | %s |' % (
            c['model'] + (' (FP)' if c['baseline'] else ''),
            c['label'],
            _metric_cell(c), human(counts['mults']) if counts else '—',
            human(counts['adds']) if counts else '—',
            '%.3f' % (counts['bits'] / 8e6) if counts else '—',
            _reduction_cell(c, 'mults'), _reduction_cell(c, 'bits')))
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


def figure(task, configs):
    """A Figure of the metric against multiplications (log x), one marker per budget."""
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.add_subplot()
    metric = configs[0]['metric']
    plotted = [c for c in configs if c['counts'] and c['counts']['mults'] > 0]
    budgets = [c for c in plotted if not c['baseline']]
    for i, c in enumerate(budgets):
        ax.errorbar(c['counts']['mults'], c['mean'], yerr=c['std'] if c['n'] > 1 else None,
                    marker=MARKERS[i % len(MARKERS)], linestyle='none', capsize=3,
                    label='%s, %s' % (c['model'], c['label']))
    for c in plotted:
        if c['baseline']:
            ax.errorbar(c['counts']['mults'], c['mean'], yerr=c['std'] if c['n'] > 1 else None,
                        marker='*', markersize=14, color='black', linestyle='none', capsize=3,
                        label='%s (full precision)' % c['model'])
            ax.axhline(c['mean'], color='black', linestyle=':', linewidth=1)
    ax.set_xscale('log')
    ax.set_xlabel('multiplications' + (' per time step' if metric == 'perplexity'
                                        else ' per image'))
    ax.set_ylabel(configs[0]['metric_name'] + ('' if metric == 'perplexity' else ' (%)'))
    ax.set_title(TASK_TITLES.get(task, task))
    ax.grid(True, which='both', alpha=0.3)
    if plotted:
        ax.legend(fontsize='small')
    fig.tight_layout()
    return fig


def write_report(runs_dir, out_dir=None):
    """Write report.md and one <task>.png per task into out_dir (default runs_dir).

    Returns (markdown text, {task: png path}).
    """
    out_dir = out_dir or runs_dir
    os.makedirs(out_dir, exist_ok=True)
    tasks = group_runs(load_runs(runs_dir))
    figures = {}
    for task, configs in tasks.items():
        path = os.path.join(out_dir, '%s.png' % task)
        figure(task, configs).savefig(path, dpi=120)
        figures[task] = path
    text = markdown_report(tasks, figures)
    with open(os.path.join(out_dir, 'report.md'), 'w') as f:
        f.write(text)
    return text, figures


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m strassen_gluon.report',
        description='Tables (Markdown) and figures (PNG) of finished runs: accuracy or '
                    'perplexity against multiplications, additions and model size.')
    parser.add_argument('runs_dir', help='folder searched for run folders with summary.json')
    parser.add_argument('--out', help='where report.md and the PNGs go (default RUNS_DIR)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not os.path.isdir(args.runs_dir):
        sys.exit('error: %s is not a folder' % args.runs_dir)
    text, figures = write_report(args.runs_dir, args.out)
    if not figures:
        sys.exit('error: no finished run (summary.json) found below %s' % args.runs_dir)
    print(text)
    print('wrote %s' % ', '.join([os.path.join(args.out or args.runs_dir, 'report.md')]
                                 + sorted(figures.values())), file=sys.stderr)


if __name__ == '__main__':
    main()
