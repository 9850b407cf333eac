"""The paper's published numbers (strassen_gluon/paper/published.json, read from the authors'
posters; docs/counting.md) and what this project's counting predicts for them.

* schema: every record has the fields the report and paper commands read, and the tables hold
  the cells the posters show (45 counting entries, 18 ImageNet budgets, 14 PTB points, ...);
* poster Table 1: the 'paper' convention on st_resnet18 in the paper's layout reproduces all 45
  reductions to 0.01 points (each rounds to the poster's value);
* ICML Fig. 2: the same count predicts the multiplications, additions and model size at which
  the figure plots each ImageNet budget (digitized x positions) and the dense ResNet-18's;
* ICML Fig. 3: the language model's counts against the figure's, with the differences that are
  known (docs/counting.md).
"""
import json
import os
from collections import Counter

import pytest

from strassen_gluon.counting import against_dense, example_inputs, poster_counts
from strassen_gluon.models import get_model

PUBLISHED = os.path.join(os.path.dirname(__file__), os.pardir, 'strassen_gluon', 'paper',
                         'published.json')
FIELDS = ('table', 'model', 'nbr_mul', 'out_patch', 'groups', 'distill', 'method', 'metric',
          'value', 'source', 'read')
METRIC_OF_TABLE = {'counting': {'mults_reduction_pct', 'adds_reduction_pct',
                                'size_reduction_pct'},
                   'imagenet': {'top1', 'top5'}, 'ptb': {'test_ppl'}, 'cifar10': {'val_acc'}}
COUNT_KEY = {'mults_reduction_pct': 'mults', 'adds_reduction_pct': 'adds',
             'size_reduction_pct': 'bits'}
GRID = [(r, p, g) for r in (6.0, 4.0, 2.0, 1.0, 0.5) for p, g in ((1, 1), (2, 1), (1, 4))]
MEBIBIT = 2 ** 20  # the posters' "MB": ResNet-18's 374,064,384 bits are plotted at 356.7


@pytest.fixture(scope='module')
def published():
    with open(PUBLISHED) as f:
        return json.load(f)


def _select(records, **where):
    return [r for r in records if all(r.get(k) == v for k, v in where.items())]


@pytest.fixture(scope='module')
def poster_cells():
    """poster_counts of every (r, p, g) cell, for the table and for the figure (they differ only
    where the figure keeps the classifier full precision)."""
    cells = {}
    for cell in GRID:
        cells[cell, 'table'] = poster_counts(*cell)
        cells[cell, 'figure'] = cells[cell, 'table'] if cell[0] < 2 else \
            poster_counts(*cell, source='figure')
    return cells


# ------------------------------------------------------------------------ the data

def test_records_follow_the_schema(published):
    for rec in published:
        assert set(FIELDS) <= set(rec), rec
        assert rec['metric'] in METRIC_OF_TABLE[rec['table']], rec
        assert rec['read'] in ('text', 'digitized')
        assert rec['method'] in ('strassen', 'fp', 'twn', 'ttq', 'bwn')
        assert isinstance(rec['value'], (int, float)) and rec['source']
        assert rec['nbr_mul'] is None or isinstance(rec['nbr_mul'], float)
        if rec['read'] == 'digitized':  # the x value of a figure point: its multiplications
            assert rec['mults'] > 0 and rec['adds'] > 0 and rec['size_mb'] > 0
    keys = [tuple(rec.get(k) for k in FIELDS[:8]) + (rec.get('stage'),) for rec in published]
    assert len(set(keys)) == len(keys)  # no record twice


def test_tables_hold_the_posters_cells(published):
    counting = _select(published, table='counting')
    assert len(counting) == 45 and all(r['read'] == 'text' for r in counting)
    assert Counter((r['nbr_mul'], r['out_patch'], r['groups']) for r in counting) == \
        {cell: 3 for cell in GRID}
    for metric in ('top1', 'top5'):
        st = _select(published, table='imagenet', metric=metric, method='strassen')
        assert len(_select(st, distill=False)) == 15
        assert sorted((r['nbr_mul'], r['out_patch'], r['groups']) for r in st if r['distill']) \
            == [(2.0, 2, 1), (4.0, 1, 1), (4.0, 2, 1)]
    ptb = _select(published, table='ptb', method='strassen')
    assert sorted((r['nbr_mul'], r['distill']) for r in ptb) == sorted(
        (f, kd) for f in (8.0, 6.0, 4.0, 2.0, 1.0, 0.5, 0.25) for kd in (False, True))
    assert all(r['error_bar'][0] < r['value'] < r['error_bar'][1]
               for r in _select(published, table='ptb'))
    assert [r['value'] for r in _select(published, table='cifar10')] == [91.37, 90.51, 90.79]


@pytest.mark.parametrize('table,method,metric,value', [
    ('imagenet', 'fp', 'top1', 69.6), ('imagenet', 'fp', 'top5', 89.2),
    ('imagenet', 'ttq', 'top1', 66.6), ('imagenet', 'ttq', 'top5', 87.2),
    ('imagenet', 'twn', 'top1', 61.8), ('imagenet', 'twn', 'top5', 84.2),
    ('imagenet', 'bwn', 'top1', 60.8), ('imagenet', 'bwn', 'top5', 83.0),
    ('ptb', 'fp', 'test_ppl', 80.09), ('ptb', 'twn', 'test_ppl', 92.23)])
def test_baselines_read_off_the_figures(published, table, method, metric, value):
    """The digitized baselines land on the values the paper states in its text (issue 18)."""
    (rec,) = _select(published, table=table, method=method, metric=metric)
    assert rec['value'] == pytest.approx(value, abs=0.01)


# ------------------------------------------------------------------------ poster Table 1

def test_counting_reproduces_all_45_entries_of_table_1(published, poster_cells):
    for rec in _select(published, table='counting'):
        cell = (rec['nbr_mul'], rec['out_patch'], rec['groups'])
        ours = poster_cells[cell, 'table']['reduction_pct'][COUNT_KEY[rec['metric']]]
        assert abs(ours - rec['value']) < 0.005, (cell, rec['metric'], ours, rec['value'])
        assert round(ours, 2) == rec['value']


def test_dense_resnet18_as_the_paper_counts_it(poster_cells):
    """Conv multiply-adds + one per batch-norm output + the classifier; 32 bits per weight,
    classifier bias and batch-norm scale and shift."""
    dense = poster_cells[(1.0, 1, 1), 'table']['dense_total']
    assert dense == {'mults': 1816557056, 'adds': 1816557056, 'bits': 32 * 11689512}


# ------------------------------------------------------------------------ ICML Fig. 2

@pytest.mark.parametrize('key,x,tolerance', [('mults', 'mults', 0.001), ('adds', 'adds', 0.0025),
                                             ('bits', 'size_mb', 0.001)])
def test_counting_predicts_where_figure_2_plots_each_budget(published, poster_cells, key, x,
                                                           tolerance):
    """Digitized x positions resolve about 0.03% (mults, size) and 0.2% (additions)."""
    for rec in _select(published, table='imagenet', method='strassen', metric='top1'):
        total = poster_cells[(rec['nbr_mul'], rec['out_patch'], rec['groups']), 'figure']['total']
        plotted = rec[x] * (MEBIBIT if x == 'size_mb' else 1)
        assert total[key] == pytest.approx(plotted, rel=tolerance), rec


def test_figure_2_full_precision_point_is_the_dense_count(published, poster_cells):
    (fp,) = _select(published, table='imagenet', method='fp', metric='top1')
    dense = poster_cells[(1.0, 1, 1), 'table']['dense_total']
    assert dense['mults'] == pytest.approx(fp['mults'], rel=0.001)
    assert dense['adds'] == pytest.approx(fp['adds'], rel=0.001)
    assert dense['bits'] == pytest.approx(fp['size_mb'] * MEBIBIT, rel=0.001)


# ------------------------------------------------------------------------ ICML Fig. 3

PTB_WORDS = dict(char_vocab_size=51, word_vocab_size=10000, max_word_l=21)
# What the figure counts and `count` does not (docs/counting.md): the highway gates' products
# t·relu(W_H x) and (1 - t)·x, 2 per unit in each of 2 layers of 1,100 units, and the LSTM's
# bias once per gate (MXNet keeps two: 2 layers x 4 gates x 650 units x 32 bits counted more).
HIGHWAY_PRODUCTS = 2 * 2 * 1100
SECOND_LSTM_BIAS_BITS = 2 * 4 * 650 * 32


@pytest.mark.parametrize('nbr_mul', [8.0, 6.0, 4.0, 2.0, 1.0, 0.5, 0.25])
def test_language_model_counts_against_figure_3(published, nbr_mul):
    """With the decoder's r scaled as the other layers' (2000·r/n_out), the exact count is the
    figure's less the highway products, and its size the figure's plus the second LSTM bias."""
    (rec,) = _select(published, table='ptb', method='strassen', nbr_mul=nbr_mul, distill=False)
    net = get_model('st_charlm', nbr_mul=nbr_mul, out_nbr_mul=int(2000 * nbr_mul), **PTB_WORDS)
    net.initialize()
    total = against_dense(net, example_inputs(net))['total']
    assert total['mults'] + HIGHWAY_PRODUCTS == pytest.approx(rec['mults'], rel=0.001)
    assert total['adds'] == pytest.approx(rec['adds'], rel=0.0025)
    assert total['bits'] - SECOND_LSTM_BIAS_BITS == pytest.approx(rec['size_mb'] * MEBIBIT,
                                                                  rel=0.001)
