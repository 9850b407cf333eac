"""The paper's tables as commands (strassen_gluon.paper): list, plan, run and render every table
at the smoke budget on tiny generated data, resuming, Ctrl-C, failures and exit statuses.

Paper values here are fixture records with made-up numbers (the real ones are
strassen_gluon/paper/published.json, checked only against the grids).
"""
import importlib
import json
import os
import shlex

import pytest
from matplotlib.image import imread

from cifar_fixtures import write_fake_cifar
from strassen_gluon.data.imagenet import write_tiny_recordio
from strassen_gluon.errors import EXIT_INTERRUPTED
from strassen_gluon.paper import published, runner
from strassen_gluon.paper.budgets import BUDGETS
from strassen_gluon.paper.cli import main
from strassen_gluon.paper.render import render
from strassen_gluon.paper.tables import IMAGENET_DISTILLED, TABLES, cells
from strassen_gluon.train.run import read_summary
from test_langmod import write_corpus

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def fixture_record(table, metric, value, source='fixture', **coords):
    return dict(dict(table=table, metric=metric, value=value, source=source, read='text'),
                **coords)


FIXTURE = [
    # Two stages of one cell: the last one is the final model's.
    fixture_record('cifar10', 'val_acc', 11.11, 'stage one', model='st_resnet20', nbr_mul=1.0,
                   out_patch=1, groups=1, distill=False, method='strassen'),
    fixture_record('cifar10', 'val_acc', 22.22, 'stage two', model='st_resnet20', nbr_mul=1.0,
                   out_patch=1, groups=1, distill=False, method='strassen'),
    dict(fixture_record('imagenet', 'top1', 33.33, model='resnet18', method='fp', nbr_mul=None,
                        out_patch=None, groups=None, distill=None), mults=1.8e9, read='digitized'),
    dict(fixture_record('imagenet', 'top1', 44.44, model='st_resnet18', method='strassen',
                        nbr_mul=1.0, out_patch=1, groups=1, distill=False), mults=5e6),
    fixture_record('ptb', 'test_ppl', 55.55, model='st_charlm', method='strassen', nbr_mul=1.0,
                   distill=True),
    fixture_record('counting', 'mults_reduction_pct', 66.66, model='st_resnet18', nbr_mul=6.0,
                   out_patch=1, groups=1, method='strassen'),
]


def shell_words(text):
    """The command lines of a plan's output (comment lines dropped)."""
    return [shlex.split(line) for line in text.splitlines() if not line.startswith('#')]


# ------------------------------------------------------------------------------- plan

def test_list_names_every_table_and_budget(capsys):
    assert main(['list']) == 0
    text = capsys.readouterr().out
    for table in ('counting', 'cifar10', 'imagenet', 'ptb', 'matmul'):
        assert table in text
        for budget in ('paper', 'cpu', 'smoke'):
            assert budget in BUDGETS[table]
    assert text.count('smoke') == 5


@pytest.mark.parametrize('table,n', [('counting', 15), ('cifar10', 14), ('imagenet', 19),
                                     ('ptb', 15), ('matmul', 20)])
def test_paper_plan_is_one_valid_command_per_cell(table, n, tmp_path, capsys):
    out = str(tmp_path / 'out')
    assert main(['plan', table, '--budget', 'paper', '--out', out]) == 0
    lines = shell_words(capsys.readouterr().out)
    assert len(lines) == n
    folders = set()
    for words in lines:
        assert words[:2] == ['python', '-m']
        if words[2] == 'strassen_gluon.paper':       # a recorded cell: record FOLDER MODULE
            assert words[3] == 'record'
            folder, module, argv = words[4], words[5], words[6:]
        else:
            module, argv = words[2], words[3:]
            folder = os.path.join(argv[argv.index('--log_dir') + 1],
                                  argv[argv.index('--run_name') + 1])
        assert os.path.dirname(folder) == out
        folders.add(folder)
        # The command's own parser accepts every line.
        importlib.import_module(module).parse_args(argv)
    assert len(folders) == n


def test_plan_links_students_to_their_dense_twin(tmp_path, capsys):
    out = str(tmp_path / 'o')
    main(['plan', 'imagenet', '--budget', 'paper', '--out', out])
    text = capsys.readouterr().out
    assert 'IMAGENET_DIR' in text.splitlines()[1]          # plan works without data
    lines = [' '.join(w) for w in shell_words(text)]
    kd = [line for line in lines if '-kd ' in line]
    assert len(kd) == len(IMAGENET_DISTILLED) == 3
    assert all('--teacher_model %s/resnet18' % out in line for line in kd)
    assert not any('--teacher_model' in line for line in lines if line not in kd)
    # cpu: every student converted from its dense twin, after it; distillation is part of the
    # CIFAR recipe, and switched off in the PTB cells without it.
    main(['plan', 'cifar10', '--budget', 'cpu', '--out', out, '--', '--gpu_index', '0'])
    lines = shell_words(capsys.readouterr().out)
    assert [w[w.index('--model') + 1] for w in lines[:2]] == ['resnet20', 'vgg7']
    for words in lines[2:]:
        model = words[words.index('--model') + 1]
        assert words[words.index('--init_from') + 1] == os.path.join(out, model[3:])
        assert '--dist_lambda' not in words and words[-6:-4] == ['--gpu_index', '0']
    # --cell picks cells in plan as in run (the headline's two, docs/reproduce.md).
    assert main(['plan', 'cifar10', '--budget', 'cpu', '--out', out, '--cell', 'resnet20',
                 '--cell', 'st_resnet20-r1-p1']) == 0
    lines = shell_words(capsys.readouterr().out)
    assert [w[w.index('--run_name') + 1] for w in lines] == ['resnet20', 'st_resnet20-r1-p1']
    assert main(['plan', 'cifar10', '--budget', 'cpu', '--cell', 'nosuch']) == 2
    assert 'no cell nosuch in cifar10' in capsys.readouterr().err
    main(['plan', 'ptb', '--budget', 'cpu', '--out', out])
    lines = [' '.join(w) for w in shell_words(capsys.readouterr().out)]
    assert sum('--dist_lambda 0' in line for line in lines) == 7
    assert all('--init_from %s/charlm' % out in line for line in lines[1:])


def test_every_budget_builds_its_cells():
    for table, budgets in BUDGETS.items():
        for budget in budgets:
            assert cells(table, budget, 'o')


def test_published_values_are_cells_of_the_grids():
    """Every published record belongs to a cell of its table (skipped without the file)."""
    records = published.load_published()
    if not records:
        pytest.skip('no published.json yet')
    for record in records:
        table = TABLES[record['table']]
        if published.coordinate(record, 'method') != 'strassen':
            continue
        assert any(all(published.same_value(p.coords.get(k), published.coordinate(record, k))
                       for k in table.coord_keys) for p in table.points()), record
    distilled = {(r['nbr_mul'], r['out_patch'], r['groups']) for r in records
                 if r['table'] == 'imagenet' and r.get('distill')}
    assert distilled == set(IMAGENET_DISTILLED)


# ------------------------------------------------------------------------ run, render

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    write_fake_cifar(root / 'cifar', n_train_per_batch=16, n_test=32)
    (root / 'imagenet').mkdir()
    write_tiny_recordio(str(root / 'imagenet' / 'train'), 16, classes=4, seed=1)
    write_tiny_recordio(str(root / 'imagenet' / 'val'), 8, classes=4, seed=2)
    write_corpus(root / 'ptb')
    return root


def smoke_run(table, out, data_dir=None):
    argv = ['run', table, '--budget', 'smoke', '--out', str(out)]
    return main(argv + (['--data_dir', str(data_dir)] if data_dir else []))


def rows(text, start):
    return [line for line in text.splitlines() if line.startswith('| %s ' % start)]


def check_png(path):
    with open(path, 'rb') as f:
        assert f.read(8) == PNG_MAGIC
    assert imread(path).shape[0] > 100


def test_cifar10_run_resume_skip_and_render(data, tmp_path, capsys):
    out = tmp_path / 'cifar'
    assert main(['run', 'cifar10', '--budget', 'smoke', '--out', str(out), '--data_dir',
                 str(data / 'cifar'), '--cell', 'resnet20']) == 0
    student, = [c for c in cells('cifar10', 'smoke', str(out), str(data / 'cifar')) if c.after]
    # A partial student: its first of three stages done, then stopped.
    assert runner.call_main(student.module, list(student.argv) + ['--stop_after_epochs',
                                                                   '1']) == 0
    assert runner.cell_state(student) == 'partial'
    capsys.readouterr()
    assert smoke_run('cifar10', out, data / 'cifar') == 0
    printed = capsys.readouterr().out
    assert '[1/2] resnet20: finished, skipped' in printed
    assert '[2/2] st_resnet20-r1-p1: resuming' in printed
    assert '--resume %s' % student.folder in printed and '2 of 2 cells finished' in printed
    st = read_summary(str(out / 'st_resnet20-r1-p1' / 'summary.json'))
    assert len(st['commands']) == 2 and [p['epochs'] for p in st['stages'].values()] == [1] * 3
    assert smoke_run('cifar10', out, data / 'cifar') == 0   # nothing left to do
    assert capsys.readouterr().out.count('finished, skipped') == 2
    assert main(['plan', 'cifar10', '--budget', 'smoke', '--out', str(out), '--missing']) == 0
    assert shell_words(capsys.readouterr().out) == []
    text, paths = render('cifar10', str(out), str(tmp_path / 'r'), published=FIXTURE)
    dense = read_summary(str(out / 'resnet20' / 'summary.json'))
    row, = rows(text, 'st_resnet20-r1-p1')
    ours = 100 * st['metrics']['val_acc']
    assert '| 22.22 (text) | %.2f | %+.2f |' % (ours, ours - 22.22) in row
    assert '%+.2f vs [' % (ours - 100 * dense['metrics']['val_acc']) in row
    assert 'stage one' not in text and '- stage two' in text
    assert rows(text, 'vgg7')[0].count('not run') == 1
    assert '12 of 14 cells have no finished run' in text
    assert paths == [str(tmp_path / 'r' / 'cifar10.md'), str(tmp_path / 'r' / 'cifar10.png')]
    check_png(paths[1])


def test_imagenet_run_and_render(data, tmp_path, capsys):
    out = tmp_path / 'imagenet'
    assert smoke_run('imagenet', out, data / 'imagenet') == 0
    text, paths = render('imagenet', str(out), str(tmp_path / 'r'), published=FIXTURE)
    st = read_summary(str(out / 'st_resnet18-r1-p1-g1' / 'summary.json'))
    row, = rows(text, 'st_resnet18-r1-p1-g1')
    top1, top5 = (100 * st['metrics'][k] for k in ('top1', 'top5'))
    assert '| 44.44 (text) | — | %.2f | %.2f |' % (top1, top5) in row
    assert '| 33.33 (digitized) |' in rows(text, 'resnet18')[0]
    check_png(paths[1])


def test_ptb_run_and_render(data, tmp_path):
    out = tmp_path / 'ptb'
    assert smoke_run('ptb', out, data / 'ptb') == 0
    text, paths = render('ptb', str(out), str(tmp_path / 'r'), published=FIXTURE)
    kd = read_summary(str(out / 'st_charlm-r1-kd' / 'summary.json'))
    row, = rows(text, 'st_charlm-r1-kd')
    assert '| 55.55 (text) | %.2f |' % kd['metrics']['test_ppl'] in row
    assert rows(text, 'st_charlm-r1')[0].split('|')[2].strip() == '—'  # no value without KD
    check_png(paths[1])


def test_counting_run_and_render(tmp_path, capsys):
    out = tmp_path / 'count'
    assert smoke_run('counting', out) == 0
    with open(out / 'count-r6-p1-g1' / 'stdout.txt') as f:
        counted = json.load(f)
    ours = 100 * (1 - counted['total']['mults'] / counted['dense_total']['mults'])
    text, paths = render('counting', str(out), str(tmp_path / 'r'), published=FIXTURE)
    row, = rows(text, 'count-r6-p1-g1')
    assert '| %.2f | 66.66 (text) |' % ours in row
    assert rows(text, 'count-r4-p1-g1')[0].count('not run') == 3
    assert '2 of 15 entries counted' in text
    # A plan line of a recorded cell, run as a scheduler would (minus the python -m).
    capsys.readouterr()
    main(['plan', 'counting', '--budget', 'paper', '--out', str(out)])
    line = next(w for w in shell_words(capsys.readouterr().out) if 'count-r4-p1-g1' in w[4])
    assert main(line[3:]) == 0
    text, _ = render('counting', str(out), str(tmp_path / 'r'), published=FIXTURE)
    assert '3 of 15 entries counted' in text
    assert paths == [str(tmp_path / 'r' / 'counting.md')]


def test_matmul_run_and_render(tmp_path, capsys):
    out = tmp_path / 'matmul'
    assert main(['run', 'matmul', '--budget', 'smoke', '--out', str(out), '--cell',
                 'matmul-2x2x2-rank7-seed0']) == 0
    assert '1 of 1 cells finished' in capsys.readouterr().out
    result = runner.read_result(str(out / 'matmul-2x2x2-rank7-seed0'))
    assert result['exit_status'] in (0, 1) and result['seconds'] > 0
    assert (result['exit_status'] == 0) == os.path.isfile(
        out / 'matmul-2x2x2-rank7-seed0' / 'algorithm.json')
    assert main(['render', 'matmul', '--runs', str(out), '--out', str(tmp_path / 'r')]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if '--rank 7' in line)
    found = 1 - result['exit_status']
    assert '| 1 | %d | %d%% | %.1f | %.1f |' % (found, 100 * found, result['seconds'],
                                                  result['seconds']) in row


# ----------------------------------------------------------------- failures, Ctrl-C

def test_ctrl_c_stops_and_records_nothing(tmp_path, monkeypatch, capsys):
    def interrupted(module, argv):
        raise KeyboardInterrupt
    monkeypatch.setattr(runner, 'call_main', interrupted)
    out = str(tmp_path / 'm')
    assert main(['run', 'matmul', '--budget', 'smoke', '--out', out]) == EXIT_INTERRUPTED
    assert 'interrupted in matmul-2x2x2-rank7-seed0' in capsys.readouterr().out
    assert runner.read_result(os.path.join(out, 'matmul-2x2x2-rank7-seed0')) is None


def test_a_failed_cell_stops_its_students(tmp_path, monkeypatch, capsys):
    calls = []

    def fails(module, argv):
        calls.append(argv)
        return 3
    monkeypatch.setattr(runner, 'call_main', fails)
    assert main(['run', 'ptb', '--budget', 'smoke', '--out', str(tmp_path)]) == 1
    printed = capsys.readouterr().out
    assert len(calls) == 1 and 'charlm: not finished (exit 3)' in printed
    assert printed.count('it needs charlm (not finished)') == 2


def test_exit_statuses(tmp_path, capsys):
    blocker = tmp_path / 'file'
    blocker.write_text('')
    assert main(['run', 'matmul', '--budget', 'smoke', '--out', str(blocker / 'x')]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: --out %s' % (blocker / 'x'))
    assert main(['render', 'cifar10', '--runs', str(tmp_path), '--out',
                 str(blocker / 'x')]) == 1
    assert main(['plan', 'nosuch', '--budget', 'paper']) == 2
    assert main(['plan', 'cifar10', '--budget', 'nosuch']) == 2
    assert main(['plan', 'cifar10']) == 2                           # --budget is required
    assert main(['run', 'imagenet', '--budget', 'smoke', '--out', str(tmp_path)]) == 2
    assert main(['run', 'matmul', '--budget', 'smoke', '--cell', 'nosuch']) == 2
    assert main(['render', 'cifar10', '--runs', str(tmp_path / 'none')]) == 2
    assert main(['record', str(tmp_path / 'r'), 'os', 'x']) == 2
