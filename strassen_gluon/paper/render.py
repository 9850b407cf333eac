"""A paper table from a folder of finished runs: Markdown with this project's values beside the
paper's, and for the tables the posters draw (CIFAR-10, ImageNet, PTB) a PNG in the posters'
form: the metric against multiplications on a log axis, this project's points over the paper's,
the cells without a finished run marked with a red x at their multiplications.

Runs are matched to cells by what they trained (model, r, p, g, distillation: the coordinates
of :func:`.tables.experiment_coords`), not by folder name, so any run of the training commands
below ``--runs`` lands in its cell; runs of several budgets of one cell are separate rows
(:mod:`strassen_gluon.report` groups them into experiments).
"""
import json
import os
import statistics

from .. import report
from ..counting import count_model, human
from ..files import require_writable
from ..train.build import build_model
from .published import describe, load_published, matching, paper_value, same_value
from .runner import OUTPUT_NAME, RESULT_NAME, read_result
from .tables import get_table, num


def render(table_name, runs_dir, out_dir, published=None):
    """Write <table>.md (and <table>.png where the posters have a figure) into out_dir.

    Returns (markdown text, [written paths]).
    """
    table = get_table(table_name)
    published = load_published() if published is None else published
    require_writable(out_dir, '--out', folder=True)
    os.makedirs(out_dir, exist_ok=True)
    renderer = {'counting': counting_markdown, 'matmul': matmul_markdown}.get(table.name)
    paths = []
    if renderer:
        text = renderer(table, runs_dir, published)
    else:
        experiments = table_experiments(table, runs_dir, published)
        png = os.path.join(out_dir, '%s.png' % table.name)
        paths.append(report.save_figure(table_figure(table, experiments, published), png))
        text = network_markdown(table, experiments, published, os.path.basename(png))
    path = os.path.join(out_dir, '%s.md' % table.name)
    with open(path, 'w') as f:
        f.write(text)
    return text, [path] + paths


def _sources(records):
    seen = []
    for r in records:
        if r and r['source'] not in seen:
            seen.append(r['source'])
    if not seen:
        return ['Paper values: none published for this table in strassen_gluon/paper/'
                'published.json yet.']
    return ['Paper values (strassen_gluon/paper/published.json; "text": printed as a number, '
            '"digitized": read off the vector figure):'] + ['- %s' % s for s in seen]


# ----------------------------------------------------------------- training tables

def table_experiments(table, runs_dir, published):
    """[(point, [experiments of that cell])] in grid order, then (None, [other experiments])."""
    runs = [r for r in report.load_runs(runs_dir) if r['task'] == table.task]
    experiments = report.group_runs(runs, published).get(table.task, [])
    points = table.points()
    cells = [(p, []) for p in points]
    others = []
    for e in experiments:
        for point, found in cells:
            if all(same_value(point.coords.get(k), e['coords'].get(k))
                   for k in table.coord_keys):
                found.append(e)
                break
        else:
            others.append(e)
    return cells + ([(None, others)] if others else [])


def _paper_records(table, point, published):
    coords = {k: point.coords.get(k) for k in table.coord_keys}
    return {m: paper_value(published, table.name, coords, m) for m in table.metrics}


def network_markdown(table, cells, published, png_name):
    metrics = table.metrics
    head = ['cell'] + ['paper %s' % m for m in metrics] + \
        ['this project %s' % report.metric_axis_label(m) for m in metrics] + \
        ['vs paper', 'vs dense', 'mults', 'experiment', 'notes']
    lines = ['# %s' % table.title, '',
             'This project\'s runs: mean ± std over distinct seeds (n); one row per '
             'experiment, so runs of several budgets of one cell have their own rows. '
             '"vs paper" is %s minus the paper\'s; "vs dense" against the full-precision '
             'experiment of the same architecture [its id]; mults per %s.'
             % (metrics[0], 'time step' if table.task == 'langmod' else 'image'), '',
             '| %s |' % ' | '.join(head), '|%s|' % '|'.join(['---'] + ['---:'] * (len(head) - 3)
                                                           + ['---', '---'])]
    used, missing = [], []
    for point, experiments in cells:
        paper = _paper_records(table, point, published) if point else {}
        used += list(paper.values())
        name = point.name if point else '(not a cell of this table)'
        if not experiments:
            missing.append(name)
            lines.append('| %s | %s | %s | — | — | — | not run | |' % (
                name, ' | '.join(describe(paper.get(m)) for m in metrics),
                ' | '.join('—' for _ in metrics)))
        for e in experiments:
            ours = [report.metric_text(e['stats'][m]) if m in e['stats'] else '—'
                    for m in metrics]
            first = paper.get(metrics[0]) or e['paper'].get(metrics[0])
            delta = '%+.2f' % (e['stats'][metrics[0]][0] - first['value']) \
                if first and metrics[0] in e['stats'] else '—'
            counts = e['counts']
            lines.append('| %s | %s | %s | %s | %s | %s | [%s] %s | %s |' % (
                name, ' | '.join(describe(paper.get(m) or e['paper'].get(m)) for m in metrics),
                ' | '.join(ours), delta, report.versus_dense(e),
                human(counts['mults']) if counts else '—', e['id'], e['label'],
                '; '.join(report.repeat_notes(e))))
    lines += ['', '%d of %d cells have no finished run%s.' % (
        len(missing), sum(1 for p, _ in cells if p), (': ' + ', '.join(missing))
        if missing else ''), '']
    lines += _sources(used) + ['', '![%s](%s)' % (table.title, png_name), '']
    return '\n'.join(lines)


def cell_mults(table, point, published):
    """Multiplications of a cell without a run: the paper's point, else counted where the table
    allows it (Table.count_shape), else None (not drawn; the Markdown lists the cell)."""
    for r in matching(published, table.name, {k: point.coords.get(k) for k in table.coord_keys}):
        if r.get('mults'):
            return r['mults']
    if table.count_shape is None:
        return None
    net = build_model(point.model, point.model_kwargs)
    return count_model(net, input_shape=table.count_shape)['total']['mults']


def table_figure(table, cells, published):
    records = [r for r in published if r['table'] == table.name]
    missing = [p for p, experiments in cells if p is not None and not experiments]
    missing_x = [(cell_mults(table, p, published), None, None) for p in missing]
    panels = []
    for metric in table.metrics:
        layers = report.paper_layers(records, metric)
        for point, experiments in cells:
            for e in experiments:
                if metric in e['stats']:
                    label = '%s [%s]' % (point.name if point else e['model'], e['id'])
                    layers.append(report.experiment_layer(e, metric, label))
        layers.append({'kind': 'missing', 'label': 'no run (%d cells)' % len(missing),
                       'points': missing_x})
        panels.append((report.metric_axis_label(metric), layers))
    per = ' per time step' if table.task == 'langmod' else ' per image'
    return report.metric_figure(table.title, panels, 'multiplications' + per)


# ----------------------------------------------------------------- recorded tables

def recorded_results(runs_dir, module):
    """[(folder, result, standard output)] of the recorded cells of `module` below runs_dir."""
    found = []
    for folder, _, files in sorted(os.walk(runs_dir)):
        if RESULT_NAME not in files:
            continue
        result = read_result(folder)
        if not result or result.get('module') != module:
            continue
        try:
            with open(os.path.join(folder, result.get('stdout', OUTPUT_NAME))) as f:
                output = f.read()
        except OSError:
            output = ''
        found.append((folder, result, output))
    return found


COUNT_METRICS = (('mults_reduction_pct', 'mults'), ('adds_reduction_pct', 'adds'),
                 ('size_reduction_pct', 'bits'))


def counts_of(output):
    """(coordinates, {metric: reduction %}, the count's JSON) of a recorded count, or None."""
    try:
        data = json.loads(output)
        options, total, dense = data['options'], data['total'], data['dense_total']
    except (ValueError, KeyError, TypeError):
        return None
    coords = {'model': data.get('model'), 'nbr_mul': options.get('nbr_mul'),
              'out_patch': options.get('out_patch', 1), 'groups': options.get('groups', 1)}
    reductions = {m: 100.0 * (1 - total[k] / dense[k]) for m, k in COUNT_METRICS}
    return coords, reductions, data


def counting_markdown(table, runs_dir, published):
    counted = [c for c in (counts_of(out) for _, result, out in
                           recorded_results(runs_dir, table.module)
                           if result.get('exit_status') == 0) if c]
    conventions = sorted({c[2].get('convention', 'project') for c in counted})
    lines = ['# %s' % table.title, '']
    if counted:
        dense = counted[0][2]['dense_total']
        lines.append('Dense ResNet-18 as counted here: %s mults, %s adds, %.2f MB.'
                     % ('{:,}'.format(dense['mults']), '{:,}'.format(dense['adds']),
                        dense['bits'] / 8e6))
    if conventions != ['paper']:
        lines.append('**Counted with this project\'s exact convention (SPEC 5.1), not the '
                     'poster\'s**: `--convention paper` counts as the poster does.')
    head = ['cell', 'r', 'p', 'g']
    for m, _ in COUNT_METRICS:
        head += ['%s here' % m, 'paper']
    lines += ['', '| %s | max abs diff |' % ' | '.join(head),
              '|%s|' % '|'.join(['---'] + ['---:'] * (len(head)))]
    used, missing, worst = [], [], None
    for point in table.points():
        coords = point.coords
        ours = next((c for c in counted if all(same_value(coords[k], c[0].get(k))
                                                for k in coords)), None)
        paper = {m: paper_value(published, table.name, coords, m) for m, _ in COUNT_METRICS}
        used += paper.values()
        cells, diffs = [], []
        for m, _ in COUNT_METRICS:
            value = ours[1][m] if ours else None
            cells += ['%.2f' % value if value is not None else 'not run', describe(paper[m])]
            if value is not None and paper[m]:
                diffs.append(abs(value - paper[m]['value']))
        if ours is None:
            missing.append(point.name)
        diff = '%.2f' % max(diffs) if diffs else '—'
        worst = max(diffs + [worst or 0]) if diffs else worst
        lines.append('| %s | %s | %s | %s | %s | %s |' % (
            point.name, num(coords['nbr_mul']), coords['out_patch'], coords['groups'],
            ' | '.join(cells), diff))
    lines += ['', '%d of %d entries counted%s.' % (
        len(table.points()) - len(missing), len(table.points()),
        '; largest difference to the poster %.2f points' % worst if worst is not None else ''),
        '']
    return '\n'.join(lines + _sources(used) + [''])


def matmul_markdown(table, runs_dir, published):
    groups = {}
    for folder, result, _ in recorded_results(runs_dir, table.module):
        argv = list(result.get('argv', []))
        seed = _option(argv, '--seed')
        options = [a for i, a in enumerate(argv) if not _is_value_of(argv, i, ('--seed',
                                                                                '--json'))]
        groups.setdefault(' '.join(options), []).append((seed, result))
    lines = ['# %s' % table.title, '',
             'The poster shows one exact 2x2x2 algorithm of rank 7 learned by the SPN; it '
             'publishes no success rate or time. Here: the share of seeds whose search ends '
             'with an exactly verified algorithm, and the wall time per seed (one process per '
             'cell: graph building and every exact check included, the import excluded).', '',
             '| command options | seeds | found | success rate | median s | max s | '
             'not counted |', '|---|---:|---:|---:|---:|---:|---|']
    for options, results in sorted(groups.items()):
        final = [(s, r) for s, r in results if r['exit_status'] in table.outcomes]
        errors = ['seed %s exit %s' % (s, r['exit_status']) for s, r in results
                  if r['exit_status'] not in table.outcomes]
        seconds = [r['seconds'] for _, r in final]
        found = sum(1 for _, r in final if r['exit_status'] == 0)
        lines.append('| `%s` | %d | %d | %s | %s | %s | %s |' % (
            options, len(final), found, '%.0f%%' % (100.0 * found / len(final)) if final
            else '—', '%.1f' % statistics.median(seconds) if seconds else '—',
            '%.1f' % max(seconds) if seconds else '—', ', '.join(errors)))
    if not groups:
        lines.append('| (no finished cell below %s) | | | | | | |' % runs_dir)
    return '\n'.join(lines + [''])


def _option(argv, flag):
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


def _is_value_of(argv, i, flags):
    return argv[i] in flags or (i > 0 and argv[i - 1] in flags)
