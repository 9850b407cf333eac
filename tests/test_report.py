"""report.py on real tiny runs of all three training commands (the summary schema they write),
and its grouping rules on copies of a real summary with other configurations and seeds."""
import copy
import json
import os
import subprocess
import sys

import pytest
from matplotlib.image import imread

from cifar_fixtures import write_fake_cifar
from langmod import train as lm_command
from strassen_gluon import cifar10, imagenet
from strassen_gluon.data.imagenet import write_tiny_recordio
from strassen_gluon.report import (budget_label, group_runs, load_runs, main, markdown_table,
                                   repeat_notes, versus_dense, write_report)
from strassen_gluon.train.run import read_summary
from test_langmod import TINY as LM_TINY, write_corpus

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
CPU = ['--gpu_index', '-1', '--quiet']


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """RUNS/{cifar,imagenet,lm}/<run>: finished runs, one stopped run, one foreign summary."""
    root = tmp_path_factory.mktemp('runs')
    data = tmp_path_factory.mktemp('data')
    write_fake_cifar(data / 'cifar', n_train_per_batch=16, n_test=32)
    cifar = ['--data_dir', str(data / 'cifar'), '--no_download', '--no-strict_counts',
             '--batch_size', '16', '--max_batches', '2', '--epochs_fp', '1', '--epochs_quant',
             '1', '--epochs_frozen', '1', '--log_dir', str(root / 'cifar')] + CPU
    for name, extra in (('fp-seed1', ['--model', 'resnet20', '--seed', '1']),
                        ('fp-seed2', ['--model', 'resnet20', '--seed', '2']),
                        ('st-p1', ['--model', 'st_resnet20']),
                        ('st-p2', ['--model', 'st_resnet20', '--out_patch', '2']),
                        ('stopped', ['--model', 'st_resnet20', '--nbr_mul', '4',
                                     '--stop_after_epochs', '1'])):
        assert cifar10.main(cifar + extra + ['--run_name', name]) == 0
    train_rec, _ = write_tiny_recordio(str(data / 'train'), 16, classes=4, seed=1)
    val_rec, _ = write_tiny_recordio(str(data / 'val'), 8, classes=4, seed=2)
    inet = ['--train_rec', train_rec, '--val_rec', val_rec, '--classes', '4', '--image_size',
            '32', '--batch_size', '4', '--max_batches', '2', '--num_workers', '1',
            '--epochs_fp', '1', '--epochs_quant', '1', '--epochs_frozen', '0', '--log_dir',
            str(root / 'imagenet')] + CPU
    assert imagenet.main(inet + ['--model', 'resnet18', '--run_name', 'fp']) == 0
    assert imagenet.main(inet + ['--model', 'st_resnet18', '--run_name', 'st']) == 0
    corpus = write_corpus(data / 'ptb')
    lm = LM_TINY + ['--data_dir', corpus, '--log_dir', str(root / 'lm'), '--max_epochs', '1',
                    '--max_batches', '3', '--max_eval_batches', '2']
    assert lm_command.main(lm + ['--quant_mode', '5', '--run_name', 'fp']) == 0
    assert lm_command.main(lm + ['--quant_mode', '2', '--run_name', 'st']) == 0
    (root / 'foreign').mkdir()
    (root / 'foreign' / 'summary.json').write_text(json.dumps({'model': 'x', 'val_acc': 0.5}))
    return root


def summary_of(runs, *path):
    return read_summary(os.path.join(runs, *path, 'summary.json'))


def test_reads_and_groups_the_runs_of_every_command(runs):
    with pytest.warns(UserWarning, match='foreign.*schema version'):
        loaded = load_runs(str(runs))
    assert len(loaded) == 8            # not the stopped run (no summary), not the foreign one
    tasks = group_runs(loaded)
    assert set(tasks) == {'cifar10', 'imagenet', 'langmod'}
    cifar = tasks['cifar10']
    assert [e['model'] for e in cifar] == ['resnet20', 'st_resnet20', 'st_resnet20']
    fp = cifar[0]
    seeds = [100 * summary_of(runs, 'cifar', s)['metrics']['val_acc'] for s in
             ('fp-seed1', 'fp-seed2')]
    assert fp['baseline'] and fp['seeds'] == ['1', '2'] and not fp['repeats']
    assert fp['stats']['val_acc'][0] == pytest.approx(sum(seeds) / 2)
    assert all(e['reference'] is fp for e in cifar)
    assert cifar[1]['counts']['mults'] > cifar[2]['counts']['mults']  # sorted by mults
    assert cifar[2]['key']['out_patch'] == 2 and cifar[2]['label'] == 'p=2'
    inet = {e['model']: e for e in tasks['imagenet']}
    assert inet['st_resnet18']['reference'] is inet['resnet18']
    assert set(inet['resnet18']['stats']) == {'top1', 'top5'}
    lm = {e['model']: e for e in tasks['langmod']}
    assert lm['charlm']['baseline'] and lm['st_charlm']['reference'] is lm['charlm']
    assert lm['st_charlm']['stats']['test_ppl'][0] == \
        summary_of(runs, 'lm', 'st')['metrics']['test_ppl']
    assert lm['st_charlm']['key']['quant_mode'] == 2 and lm['charlm']['label'] == \
        'full precision'


def test_markdown_tables_and_figures(runs, tmp_path):
    out = tmp_path / 'report'
    with pytest.warns(UserWarning):
        text, figures = write_report(str(runs), str(out), published=[])
    assert (out / 'report.md').read_text() == text
    for title in ('## CIFAR-10', '## ImageNet', '## Penn Treebank'):
        assert title in text
    lines = text.splitlines()
    fp_row = next(line for line in lines if '| resnet20 (FP) |' in line)
    assert '(n=2)' in fp_row and 'reference' in fp_row
    fp_cost = summary_of(runs, 'cifar', 'fp-seed1')['cost']
    p2 = summary_of(runs, 'cifar', 'st-p2')
    p2_row = next(line for line in lines if '| p=2 |' in line)
    assert '%.2f%%' % (100 * (1 - p2['cost']['mults'] / fp_cost['mults'])) in p2_row
    assert '%.2f' % (100 * p2['metrics']['val_acc']) in p2_row
    assert '%.3f' % (p2['cost']['bits'] / 8e6) in p2_row
    st_lm = next(line for line in lines if '| st_charlm |' in line)
    lm_fp, lm_st = summary_of(runs, 'lm', 'fp')['cost'], summary_of(runs, 'lm', 'st')['cost']
    assert '%.2f%%' % (100 * (1 - lm_st['mults'] / lm_fp['mults'])) in st_lm
    assert 'nbr_mul=4' not in text  # the stopped run
    for task in ('cifar10', 'imagenet', 'langmod'):
        path = figures[task]
        assert os.path.dirname(path) == str(out)
        with open(path, 'rb') as f:
            assert f.read(8) == PNG_MAGIC
        image = imread(path)
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert '](%s.png)' % task in text


def test_labels():
    assert budget_label({}, baseline=True) == 'full precision'
    assert budget_label({'nbr_mul': 1.0}, baseline=True) == 'full precision'
    assert budget_label({'out_patch': 2, 'quantizer': 'threshold'}, others=['quantizer']) == \
        'p=2, quantizer=threshold'
    assert budget_label({'nbr_mul': [1, 1, 2, 2]}) == 'nbr_mul=1,1,2,2'


# ------------------------------------------------------------ what one experiment is

def clone(base, root, name, value, model=None, finished=None, **config):
    """A run folder holding a copy of the real summary `base` with another configuration,
    val_acc (%) and finishing time (and the config.json that names its model and options)."""
    summary = copy.deepcopy(base)
    summary['config'].update(config, run_name=name, log_dir=str(root))
    if model:
        summary['model'] = summary['config']['model'] = model
    summary['metrics']['val_acc'] = value / 100
    summary['finished'] = finished or summary['finished']
    folder = root / name
    folder.mkdir(parents=True)
    (folder / 'summary.json').write_text(json.dumps(summary))
    (folder / 'config.json').write_text(json.dumps(
        {'schema_version': 1, 'task': summary['task'], 'model': summary['model'],
         'config': summary['config']}))
    return str(folder)


def experiments_by_label(root, **kw):
    return {e['label']: e for e in group_runs(load_runs(str(root)), **kw)['cifar10']}


def test_seeds_average_and_repeats_and_subsets_stay_apart(runs, tmp_path):
    base = summary_of(runs, 'cifar', 'st-p1')
    root = tmp_path / 'r'
    clone(base, root, 'seed1', 40.0, seed=1, train_subset=1000)
    clone(base, root, 'seed2', 50.0, seed=2, train_subset=1000)
    clone(base, root, 'seed3-old', 10.0, seed=3, train_subset=200, finished='2024-01-01T00:00')
    clone(base, root, 'seed3-new', 20.0, seed=3, train_subset=200, finished='2024-01-02T00:00')
    found = experiments_by_label(root)
    assert set(found) == {'train_subset=1000', 'train_subset=200'}
    two_seeds = found['train_subset=1000']
    assert two_seeds['stats']['val_acc'] == (45.0, pytest.approx(7.0711, abs=1e-4), 2)
    repeated = found['train_subset=200']
    assert repeated['stats']['val_acc'] == (20.0, 0.0, 1)        # the newest, not averaged
    assert repeat_notes(repeated) == ['seed 3 ran 2×: 10.00, 20.00 (the newest counted)']
    text = markdown_table('cifar10', list(found.values()))
    assert 'seed 3 ran 2×' in text and '45.00 ± 7.07 (n=2)' in text
    assert 'no resnet20 run' in text


def test_an_option_added_later_at_its_old_behaviour_joins_older_runs(runs, tmp_path):
    base = summary_of(runs, 'cifar', 'st-p1')
    root = tmp_path / 'r'
    older = copy.deepcopy(base)
    del older['config']['freeze_wc']                 # stored before the option existed
    clone(older, root, 'old', 40.0, seed=1)
    clone(base, root, 'new', 50.0, seed=2, freeze_wc=False)
    clone(base, root, 'held', 60.0, seed=3, freeze_wc=True)
    found = experiments_by_label(root)
    assert len(found) == 2
    merged, = [e for e in found.values() if e['stats']['val_acc'][2] == 2]
    assert merged['stats']['val_acc'][0] == 45.0
    assert found['freeze_wc=True']['stats']['val_acc'] == (60.0, 0.0, 1)


def test_students_compare_with_their_own_dense_architecture(runs, tmp_path):
    base = summary_of(runs, 'cifar', 'st-p1')
    dense = summary_of(runs, 'cifar', 'fp-seed1')
    root = tmp_path / 'r'
    clone(dense, root, 'long', 80.0, seed=1)
    short = [clone(dense, root, 'short%d' % s, 60.0 + s, seed=s, epochs_fp=16) for s in (1, 2)]
    # Students of two seeds of the short dense experiment, each with seed 7: two seeds of one
    # experiment (the source's seed is part of a run's seed), compared with that experiment.
    for i, folder in enumerate(short):
        clone(base, root, 'student%d' % i, 50.0 + i, seed=7, init_from=folder, dist_lambda=0.5)
    clone(base, root, 'vgg', 30.0, model='st_vgg7')
    experiments = group_runs(load_runs(str(root)))['cifar10']
    by_model = {}
    for e in experiments:
        by_model.setdefault(e['model'], []).append(e)
    student, = [e for e in by_model['st_resnet20']]
    assert student['seeds'] == ['7, init_from 1', '7, init_from 2'] and not student['repeats']
    assert student['stats']['val_acc'][:2] == (50.5, pytest.approx(0.7071, abs=1e-4))
    short_experiment, = [e for e in by_model['resnet20'] if e['key']['epochs_fp'] == 16]
    assert student['reference'] is short_experiment
    assert student['key']['init_from'] == {'run': 'resnet20', 'experiment': short_experiment['id']}
    assert 'init_from=resnet20 run [%s]' % short_experiment['id'] in student['label']
    assert versus_dense(student) == '%+.2f vs [%s]' % (50.5 - 61.5, short_experiment['id'])
    vgg, = by_model['st_vgg7']
    assert vgg['reference'] is None and versus_dense(vgg) == 'no vgg7 run'


def test_the_paper_value_sits_beside_its_cell(runs, tmp_path):
    base = summary_of(runs, 'cifar', 'st-p1')
    root = tmp_path / 'r'
    clone(base, root, 'a', 42.0, nbr_mul=1.0)
    clone(base, root, 'b', 43.0, out_patch=2)
    record = dict(table='cifar10', model='st_resnet20', nbr_mul=1.0, out_patch=1, groups=1,
                  distill=False, method='strassen', metric='val_acc', value=12.34,
                  source='fixture', read='text')
    found = experiments_by_label(root, published=[record])
    assert found['nbr_mul=1']['paper']['val_acc'] is record
    assert found['p=2']['paper']['val_acc'] is None
    text = markdown_table('cifar10', list(found.values()))
    assert '| 42.00 | 12.34 (text) |' in text


def test_cli_exit_statuses(runs, tmp_path, capsys):
    with pytest.warns(UserWarning):
        assert main([str(runs), '--out', str(tmp_path / 'out')]) == 0
    assert '## CIFAR-10' in capsys.readouterr().out
    assert (tmp_path / 'out' / 'cifar10.png').is_file()
    assert main([str(tmp_path / 'out')]) == 1                    # no runs there
    assert capsys.readouterr().err.startswith('error: no finished run')
    blocker = tmp_path / 'file'
    blocker.write_text('')
    assert main([str(runs), '--out', str(blocker / 'x')]) == 1    # checked before reading
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: --out %s' % (blocker / 'x'))
    assert main([str(tmp_path / 'nosuch')]) == 2
    assert main([str(runs), '--nosuch']) == 2


def test_report_does_not_use_pyplot(runs, tmp_path):
    """Neither the report nor the paper tables' renderer (whose figures it draws)."""
    code = ('import sys, warnings; warnings.simplefilter("ignore");'
            'from strassen_gluon.report import write_report;'
            'from strassen_gluon.paper.render import render;'
            'write_report(%r, %r); render("cifar10", %r, %r);'
            'assert "matplotlib.pyplot" not in sys.modules'
            % (str(runs), str(tmp_path / 'o'), str(runs / 'cifar'), str(tmp_path / 'p')))
    subprocess.run([sys.executable, '-c', code], check=True)
