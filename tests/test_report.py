"""report.py: tables and figures from fake run folders in the formats the trainers write."""
import json
import os
import subprocess
import sys

import pytest
from matplotlib.image import imread

from strassen_gluon.report import (budget_label, group_runs, load_runs, main, read_run,
                                   write_report)

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
FP_COUNTS = {'mults': 40_997_504, 'adds': 40_997_504, 'bits': 8_718_144}
ST_P1 = {'mults': 385_664, 'adds': 46_502_528, 'bits': 735_904}
ST_P2 = {'mults': 244_352, 'adds': 24_564_352, 'bits': 1_459_520}


def _write(folder, summary):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'summary.json'), 'w') as f:
        json.dump(summary, f)


def cifar_run(model, val_acc, counts, **kwargs):
    """The keys strassen_gluon.cifar10 writes (a subset)."""
    return dict(model=model, model_kwargs=kwargs, val_acc=val_acc, best_val_acc=val_acc,
                mults=counts['mults'], adds=counts['adds'], bits=counts['bits'],
                cost=dict(counts), command='python -m strassen_gluon.cifar10 --model ' + model,
                finished='2024-01-01T00:00:00')


def lm_run(model, quant_mode, test_ppl, model_kwargs, mults, bits):
    """The keys langmod/train.py writes (a subset)."""
    return dict(options={'quant_mode': quant_mode, 'learning_rate': 2.0, 'seed': 1},
                model=model, model_kwargs=model_kwargs, test_ppl=test_ppl,
                test_ppl_by_phase={'main': test_ppl},
                ops_per_time_step={'mults': mults, 'adds': mults * 2, 'bits': bits})


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / 'runs'
    _write(root / 'cifar' / 'fp-seed1', cifar_run('resnet20', 0.9120, FP_COUNTS))
    _write(root / 'cifar' / 'fp-seed2', cifar_run('resnet20', 0.9130, FP_COUNTS))
    _write(root / 'cifar' / 'st-p1', cifar_run('st_resnet20', 0.9079, ST_P1, nbr_mul=1.0))
    _write(root / 'cifar' / 'st-p2', cifar_run('st_resnet20', 0.9001, ST_P2, nbr_mul=1.0,
                                               out_patch=2))
    # Language model, as langmod/train.py writes it: counts per time step.
    arch = dict(char_vocab_size=51, word_vocab_size=10000, max_word_l=21, rnn_size=650)
    _write(root / 'ptb' / 'fp', lm_run('charlm', 5, 82.5, arch, 20_551_900, 619_941_280))
    _write(root / 'ptb' / 'st', lm_run('st_charlm', 2, 85.0,
                                       dict(arch, nbr_mul=1.0, out_nbr_mul=2000, phase=2),
                                       42_000, 93_059_880))
    # Not finished, not a run, broken: all ignored.
    _write(root / 'cifar' / 'running', dict(cifar_run('st_resnet20', 0.5, ST_P1, nbr_mul=4.0),
                                            finished=False))
    os.makedirs(root / 'empty')
    (root / 'broken').mkdir()
    (root / 'broken' / 'summary.json').write_text('{"model": ')
    return root


def test_reads_and_groups_runs(runs):
    with pytest.warns(UserWarning, match='unreadable'):
        loaded = load_runs(str(runs))
    assert len(loaded) == 6
    tasks = group_runs(loaded)
    assert set(tasks) == {'cifar10', 'ptb'}
    cifar = tasks['cifar10']
    assert [c['model'] for c in cifar] == ['resnet20', 'st_resnet20', 'st_resnet20']
    fp = cifar[0]
    assert fp['baseline'] and fp['n'] == 2
    assert fp['mean'] == pytest.approx(91.25) and fp['std'] == pytest.approx(0.0707, abs=1e-3)
    assert all(c['reference'] is fp for c in cifar)
    assert cifar[1]['counts']['mults'] > cifar[2]['counts']['mults']  # sorted by mults
    ptb = {c['model']: c for c in tasks['ptb']}
    assert ptb['charlm']['baseline'] and not ptb['st_charlm']['baseline']
    assert ptb['st_charlm']['metric'] == 'perplexity' and ptb['st_charlm']['mean'] == 85.0
    assert ptb['st_charlm']['budget']['quant_mode'] == 2
    # Options common to all of the task's runs (the vocabulary) stay out of the label.
    assert ptb['st_charlm']['label'] == 'nbr_mul=1, out_nbr_mul=2000, quant_mode=2, phase=2'
    assert ptb['charlm']['label'] == 'quant_mode=5'


def test_markdown_tables_and_figures(runs, tmp_path):
    out = tmp_path / 'report'
    with pytest.warns(UserWarning):
        text, figures = write_report(str(runs), str(out))
    assert (out / 'report.md').read_text() == text
    assert '## CIFAR-10' in text and '## Penn Treebank' in text
    lines = text.splitlines()
    fp_row = next(line for line in lines if line.startswith('| resnet20 (FP)'))
    assert '91.25 ± 0.07 (n=2)' in fp_row and 'reference' in fp_row and '41.00M' in fp_row
    p2_row = next(line for line in lines if 'p=2' in line)
    reduction = 100 * (1 - ST_P2['mults'] / FP_COUNTS['mults'])
    assert '%.2f%%' % reduction in p2_row
    assert '90.01' in p2_row and '%.3f' % (ST_P2['bits'] / 8e6) in p2_row
    size_reduction = 100 * (1 - ST_P2['bits'] / FP_COUNTS['bits'])
    assert '%.2f%%' % size_reduction in p2_row
    st_lm = next(line for line in lines if line.startswith('| st_charlm'))
    assert '85.00' in st_lm and '%.2f%%' % (100 * (1 - 42_000 / 20_551_900)) in st_lm
    assert 'nbr_mul=4' not in text  # the unfinished run
    for task in ('cifar10', 'ptb'):
        path = figures[task]
        assert os.path.dirname(path) == str(out)
        with open(path, 'rb') as f:
            assert f.read(8) == PNG_MAGIC
        image = imread(path)
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert '](%s.png)' % task in text


def test_reduction_needs_a_matching_baseline():
    st = read_run({'model': 'st_vgg7', 'val_acc': 0.9, 'mults': 10, 'adds': 10, 'bits': 10})
    fp1 = read_run({'model': 'resnet20', 'val_acc': 0.9, 'mults': 100, 'adds': 1, 'bits': 1})
    fp2 = read_run({'model': 'resnet56', 'val_acc': 0.9, 'mults': 300, 'adds': 1, 'bits': 1})
    configs = group_runs([st, fp1, fp2])['cifar10']
    assert next(c for c in configs if c['model'] == 'st_vgg7')['reference'] is None
    configs = group_runs([st, fp1])['cifar10']
    assert next(c for c in configs if c['model'] == 'st_vgg7')['reference']['model'] == 'resnet20'


def test_read_run_tolerates_formats():
    assert read_run({'model': 'x', 'finished': False, 'val_acc': 0.5}) is None
    with pytest.warns(UserWarning, match='no accuracy'):
        assert read_run({'model': 'x'}) is None
    run = read_run({'model': 'st_resnet20', 'metrics': {'test_acc': 91.0},
                    'count': {'mults': 1, 'adds': 2, 'bits': 3}, 'nbr_mul': [1, 1, 2, 2]})
    assert run['value'] == 91.0 and run['counts'] == {'mults': 1, 'adds': 2, 'bits': 3}
    assert run['task'] == 'cifar10' and not run['baseline']
    assert budget_label(run['budget']) == 'nbr_mul=1,1,2,2'
    run = read_run({'task': 'ptb', 'model': 'st_charlm', 'final': {'test_perplexity': 85.0},
                    'config': {'quant_mode': 2, 'nbr_mul': 0.5},
                    'counts': {'total': {'mults': 4, 'adds': 5, 'bits': 6},
                               'layers': [{'name': 'lstm', 'spn': True}]}})
    assert (run['metric'], run['value'], run['baseline']) == ('perplexity', 85.0, False)
    assert run['counts'] == {'mults': 4, 'adds': 5, 'bits': 6}
    assert run['budget'] == {'quant_mode': 2, 'nbr_mul': 0.5}
    assert read_run({'model': 'st_charlm', 'quant_mode': 5, 'ppl': 80})['baseline']
    assert budget_label({}, baseline=True) == 'full precision'
    assert budget_label({'out_patch': 2, 'quantizer': 'threshold'}) == 'p=2, quantizer=threshold'


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
