"""report.py on real tiny runs of all three training commands (the summary schema they write)."""
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
from strassen_gluon.report import budget_label, group_runs, load_runs, main, write_report
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
    assert [c['model'] for c in cifar] == ['resnet20', 'st_resnet20', 'st_resnet20']
    fp = cifar[0]
    seeds = [100 * summary_of(runs, 'cifar', s)['metrics']['val_acc'] for s in
             ('fp-seed1', 'fp-seed2')]
    assert fp['baseline'] and fp['n'] == 2 and fp['mean'] == pytest.approx(sum(seeds) / 2)
    assert all(c['reference'] is fp for c in cifar)
    assert cifar[1]['counts']['mults'] > cifar[2]['counts']['mults']  # sorted by mults
    assert cifar[2]['budget'] == {'out_patch': 2} and cifar[2]['label'] == 'p=2'
    inet = {c['model']: c for c in tasks['imagenet']}
    assert inet['st_resnet18']['reference'] is inet['resnet18']
    assert inet['resnet18']['metric_name'] == 'top1'
    lm = {c['model']: c for c in tasks['langmod']}
    assert lm['charlm']['baseline'] and not lm['st_charlm']['baseline']
    assert lm['st_charlm']['metric'] == 'perplexity'
    assert lm['st_charlm']['mean'] == summary_of(runs, 'lm', 'st')['metrics']['test_ppl']
    assert lm['st_charlm']['budget']['quant_mode'] == 2 and lm['charlm']['label'] == \
        'quant_mode=5'


def test_markdown_tables_and_figures(runs, tmp_path):
    out = tmp_path / 'report'
    with pytest.warns(UserWarning):
        text, figures = write_report(str(runs), str(out))
    assert (out / 'report.md').read_text() == text
    for title in ('## CIFAR-10', '## ImageNet', '## Penn Treebank'):
        assert title in text
    lines = text.splitlines()
    fp_row = next(line for line in lines if line.startswith('| resnet20 (FP)'))
    assert '(n=2)' in fp_row and 'reference' in fp_row
    fp_cost = summary_of(runs, 'cifar', 'fp-seed1')['cost']
    p2 = summary_of(runs, 'cifar', 'st-p2')
    p2_row = next(line for line in lines if '| p=2 |' in line)
    assert '%.2f%%' % (100 * (1 - p2['cost']['mults'] / fp_cost['mults'])) in p2_row
    assert '%.2f' % (100 * p2['metrics']['val_acc']) in p2_row
    assert '%.3f' % (p2['cost']['bits'] / 8e6) in p2_row
    st_lm = next(line for line in lines if line.startswith('| st_charlm'))
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
    assert budget_label({'out_patch': 2, 'quantizer': 'threshold'}) == 'p=2, quantizer=threshold'
    assert budget_label({'nbr_mul': [1, 1, 2, 2]}) == 'nbr_mul=1,1,2,2'


def test_cli_prints_markdown_and_fails_without_runs(runs, tmp_path, capsys):
    with pytest.warns(UserWarning):
        main([str(runs), '--out', str(tmp_path / 'out')])
    assert '## CIFAR-10' in capsys.readouterr().out
    assert (tmp_path / 'out' / 'cifar10.png').is_file()
    with pytest.raises(SystemExit, match='no finished run'):
        main([str(tmp_path / 'out')])


def test_report_does_not_use_pyplot(runs, tmp_path):
    code = ('import sys, warnings; warnings.simplefilter("ignore");'
            'from strassen_gluon.report import write_report;'
            'write_report(%r, %r);'
            'assert "matplotlib.pyplot" not in sys.modules' % (str(runs), str(tmp_path / 'o')))
    subprocess.run([sys.executable, '-c', code], check=True)
