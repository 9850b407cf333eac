"""The paper's tables and figures from a folder of finished runs.

``python -m strassen_gluon.report RUNS_DIR`` finds every ``summary.json`` below RUNS_DIR, groups
the runs by task (CIFAR-10, PTB, ...) and by configuration (model and budget; several seeds of one
configuration become mean ± std), and writes ``report.md`` (one table per task: accuracy or
perplexity against multiplications, additions and model size, with the reduction relative to the
full-precision model) and one figure per task, ``<task>.png`` (the metric against
multiplications on a log axis, one marker per budget, the full-precision model marked).

The reader is tolerant: it takes the first of several names for each field and ignores unknown
keys. What it reads from a ``summary.json`` (top level, or inside ``final`` / ``metrics`` /
``results`` / ``test``):

=============  ===========================================================================
field          keys, first found wins
=============  ===========================================================================
task           ``task``, ``dataset``; else ``ptb`` if a perplexity is found, else ``cifar10``
model          ``model``, ``model_name``, ``arch``
budget         the first dict of ``model_kwargs`` / ``model_options`` / ``options`` / ``config`` /
               ``args``, plus ``nbr_mul``, ``out_patch``, ``groups``, ``out_nbr_mul``,
               ``quant_mode`` from the top level or any of those dicts. Runs with equal model
               and budget are seeds of one configuration. Tables show the budget keys and the
               other options that differ between a task's configurations
accuracy       ``test_acc``, ``val_acc``, ``final_val_acc``, ``accuracy``, ``top1``, ``acc``
               (a fraction or a percentage; shown in %)
perplexity     ``test_ppl``, ``test_perplexity``, ``perplexity``, ``ppl``
counts         ``mults``, ``adds``, ``bits`` at top level, or in ``counts`` / ``count`` / ``cost`` /
               ``ops_per_time_step`` (a ``count_model`` result with ``total``, or the three keys
               directly)
baseline       ``baseline`` / ``full_precision`` (bool); else ``quant_mode == 5`` (the LM's
               full-precision mode); else no layer of ``counts.layers`` is an SPN; else the
               model name does not start with ``st_``
finished       a run with ``finished: false`` or ``status`` in running / failed is skipped
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

SUMMARY = 'summary.json'
NESTS = ('final', 'metrics', 'results', 'test')
OPTION_NESTS = ('model_kwargs', 'model_options', 'options', 'config', 'args')
TASK_KEYS = ('task', 'dataset')
MODEL_KEYS = ('model', 'model_name', 'arch')
BUDGET_KEYS = ('nbr_mul', 'out_patch', 'groups', 'out_nbr_mul', 'quant_mode')
ACCURACY_KEYS = ('test_acc', 'val_acc', 'final_val_acc', 'accuracy', 'top1', 'acc')
PERPLEXITY_KEYS = ('test_ppl', 'test_perplexity', 'perplexity', 'ppl')
COUNT_NESTS = ('counts', 'count', 'cost', 'ops_per_time_step')
COUNT_KEYS = ('mults', 'adds', 'bits')
FP_QUANT_MODE = 5  # the language model's full-precision mode (SPEC 2.3)
TASK_TITLES = {'cifar10': 'CIFAR-10', 'ptb': 'Penn Treebank', 'imagenet': 'ImageNet'}
BUDGET_LABELS = {'nbr_mul': 'nbr_mul', 'out_patch': 'p', 'groups': 'g',
                 'out_nbr_mul': 'out_nbr_mul', 'quant_mode': 'quant_mode'}


# ------------------------------------------------------------------------- reading runs

def _find(summary, keys, nests=NESTS):
    """The value of the first of `keys` at the top level of `summary`, then inside `nests`."""
    for scope in [summary] + [summary.get(n) for n in nests]:
        if isinstance(scope, dict):
            for key in keys:
                if scope.get(key) is not None:
                    return scope[key]
    return None


def _counts(summary):
    for scope in [summary] + [summary.get(n) for n in COUNT_NESTS]:
        if not isinstance(scope, dict):
            continue
        if isinstance(scope.get('total'), dict):
            scope = scope['total']
        if all(isinstance(scope.get(k), (int, float)) for k in COUNT_KEYS):
            return {k: scope[k] for k in COUNT_KEYS}
    return None


def _is_baseline(summary, model, budget):
    flag = _find(summary, ('baseline', 'full_precision'))
    if flag is not None:
        return bool(flag)
    if budget.get('quant_mode') is not None:
        return budget['quant_mode'] == FP_QUANT_MODE
    for nest in COUNT_NESTS:
        layers = summary.get(nest, {}).get('layers') if isinstance(summary.get(nest), dict) \
            else None
        if layers:
            return not any(layer.get('spn') for layer in layers)
    return not str(model).startswith('st_')


def read_run(summary, path=''):
    """One run's record from its summary dict, or None if it is unfinished or has no metric."""
    if summary.get('finished') is False or summary.get('status') in ('running', 'failed'):
        return None
    accuracy = _find(summary, ACCURACY_KEYS)
    perplexity = _find(summary, PERPLEXITY_KEYS)
    if accuracy is None and perplexity is None:
        warnings.warn('%s: no accuracy or perplexity found; skipped' % path)
        return None
    task = _find(summary, TASK_KEYS) or ('ptb' if perplexity is not None else 'cifar10')
    model = _find(summary, MODEL_KEYS) or '?'
    # The configuration is every model option the run recorded; the budget keys may also sit at
    # the top level.
    budget = next((dict(summary[n]) for n in OPTION_NESTS if isinstance(summary.get(n), dict)),
                  {})
    for key in BUDGET_KEYS:
        if key not in budget:
            value = _find(summary, (key,), OPTION_NESTS)
            if value is not None:
                budget[key] = value
    budget = {k: v for k, v in budget.items() if v is not None}
    if perplexity is not None:
        metric, value = 'perplexity', float(perplexity)
    else:
        value = float(accuracy)
        metric, value = 'accuracy', value * 100 if value <= 1 else value
    return {'path': path, 'task': str(task).lower(), 'model': str(model), 'budget': budget,
            'metric': metric, 'value': value, 'counts': _counts(summary),
            'baseline': _is_baseline(summary, model, budget)}


def load_runs(runs_dir):
    """Records of every finished run below `runs_dir` (folders holding a summary.json)."""
    runs = []
    for folder, _, files in sorted(os.walk(runs_dir)):
        if SUMMARY not in files:
            continue
        path = os.path.join(folder, SUMMARY)
        try:
            with open(path) as f:
                summary = json.load(f)
        except (OSError, ValueError) as err:
            warnings.warn('%s: unreadable (%s); skipped' % (path, err))
            continue
        run = read_run(summary, path) if isinstance(summary, dict) else None
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
            'metric': members[0]['metric'], 'mean': statistics.fmean(values),
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
    metric_title = 'accuracy (%)' if metric == 'accuracy' else 'perplexity'
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
    ax.set_ylabel('test perplexity' if metric == 'perplexity' else 'accuracy (%)')
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
