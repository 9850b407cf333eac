"""The flip-graph walk, the CSE addition count, --method and outside 3x3 algorithms."""
import json
import random

import numpy as np
import pytest

from strassen_gluon.matmul import (Algorithm, apply, apply_multiplications, count_additions, evaluate, is_exact, load_algorithm,
                                   main, naive_algorithm, save_algorithm)
from strassen_gluon.matmul.cli import default_method
from strassen_gluon.matmul.cse import cse_additions, eliminate, evaluate_program
from strassen_gluon.matmul.flip import _Scheme, _algorithm_of, _terms_of, flip_search

# Laderman's rank-23 algorithm (Bull. AMS 82, 1976), written out from its formulas:
# m_r = (LADERMAN_PRODUCTS[r][0]) (LADERMAN_PRODUCTS[r][1]), c_ij = LADERMAN_OUTPUTS['cij'].
LADERMAN_PRODUCTS = [
    ('a11 + a12 + a13 - a21 - a22 - a32 - a33', 'b22'),
    ('a11 - a21', '-b12 + b22'),
    ('a22', '-b11 + b12 + b21 - b22 - b23 - b31 + b33'),
    ('-a11 + a21 + a22', 'b11 - b12 + b22'),
    ('a21 + a22', '-b11 + b12'),
    ('a11', 'b11'),
    ('-a11 + a31 + a32', 'b11 - b13 + b23'),
    ('-a11 + a31', 'b13 - b23'),
    ('a31 + a32', '-b11 + b13'),
    ('a11 + a12 + a13 - a22 - a23 - a31 - a32', 'b23'),
    ('a32', '-b11 + b13 + b21 - b22 - b23 - b31 + b32'),
    ('-a13 + a32 + a33', 'b22 + b31 - b32'),
    ('a13 - a33', 'b22 - b32'),
    ('a13', 'b31'),
    ('a32 + a33', '-b31 + b32'),
    ('-a13 + a22 + a23', 'b23 + b31 - b33'),
    ('a13 - a23', 'b23 - b33'),
    ('a22 + a23', '-b31 + b33'),
    ('a12', 'b21'),
    ('a23', 'b32'),
    ('a21', 'b13'),
    ('a31', 'b12'),
    ('a33', 'b33'),
]
LADERMAN_OUTPUTS = {
    'c11': 'm6 + m14 + m19',
    'c12': 'm1 + m4 + m5 + m6 + m12 + m14 + m15',
    'c13': 'm6 + m7 + m9 + m10 + m14 + m16 + m18',
    'c21': 'm2 + m3 + m4 + m6 + m14 + m16 + m17',
    'c22': 'm2 + m4 + m5 + m6 + m20',
    'c23': 'm14 + m16 + m17 + m18 + m21',
    'c31': 'm6 + m7 + m8 + m11 + m12 + m13 + m14',
    'c32': 'm12 + m13 + m14 + m15 + m22',
    'c33': 'm6 + m7 + m8 + m9 + m23',
}


def _parse(text, letter, size):
    """'a11 - a21' -> coefficients over row-major a11..a33 (or m1..m23 for letter 'm')."""
    coefficients = [0] * size
    for token in text.replace('- ', '-').replace('+ ', '+').split():
        sign = -1 if token.startswith('-') else 1
        name = token.lstrip('+-')
        assert name[0] == letter, token
        if letter == 'm':
            index = int(name[1:]) - 1
        else:
            index = (int(name[1]) - 1) * 3 + int(name[2]) - 1
        coefficients[index] += sign
    return coefficients


def laderman():
    w_a = [_parse(a, 'a', 9) for a, _ in LADERMAN_PRODUCTS]
    w_b = [_parse(b, 'b', 9) for _, b in LADERMAN_PRODUCTS]
    w_c = [_parse(LADERMAN_OUTPUTS['c%d%d' % (i, j)], 'm', 23) for i in (1, 2, 3) for j in (1, 2, 3)]
    return Algorithm(3, 3, 3, w_a, w_b, w_c)


def test_cli_verifies_laderman_and_rejects_a_changed_coefficient(tmp_path, capsys):
    path = tmp_path / 'laderman.json'
    path.write_text(json.dumps(laderman().to_dict()))
    assert main(['--verify', str(path)]) == 0
    text = capsys.readouterr().out
    assert 'rank 23' in text and 'exact: yes' in text
    broken = laderman().to_dict()
    broken['W_c'][4][19] = 0  # drop m20 from c22
    path.write_text(json.dumps(broken))
    assert main(['--verify', str(path)]) == 1


def test_flips_and_plus_transitions_keep_the_scheme_exact_and_ternary():
    rng = random.Random(3)
    scheme = _Scheme(_terms_of(naive_algorithm(3, 3, 3)), rng)
    changed = 0
    for move in range(3000):
        changed += scheme.try_plus() if move % 500 == 499 else scheme.try_flip()
        if move % 250 == 0:
            algorithm = _algorithm_of(3, 3, 3, scheme.terms())
            assert is_exact(algorithm) and algorithm.ternary
    assert changed > 100  # the walk moved
    assert is_exact(_algorithm_of(3, 3, 3, scheme.terms()))


def test_flip_search_finds_strassen_rank_and_a_harder_case():
    for m, k, n, rank in [(2, 2, 2, 7), (2, 2, 3, 11)]:
        result = flip_search(m, k, n, rank, seed=0, time_limit=None, max_steps=3_000_000)
        assert result.found and result.algorithm.rank == rank
        assert is_exact(result.algorithm) and result.algorithm.ternary


def test_flip_search_reports_the_best_rank_when_the_target_is_out_of_reach():
    result = flip_search(2, 2, 2, 6, seed=0, time_limit=None, max_steps=20000)
    assert not result.found and result.algorithm.rank >= 7 and is_exact(result.algorithm)


@pytest.mark.parametrize('make', [laderman, lambda: load_algorithm(
    'strassen_gluon/algorithms/strassen_2x2x2.json'), lambda: naive_algorithm(2, 3, 4)])
def test_cse_program_computes_the_product_with_no_more_additions(make):
    algorithm = make()
    naive = count_additions(algorithm)
    after = cse_additions(algorithm.W_a, algorithm.W_b, algorithm.W_c)
    for name in naive:
        assert after[name] <= naive[name]
    rng = np.random.default_rng(0)
    steps_a, rows_a = eliminate(algorithm.W_a)
    steps_b, rows_b = eliminate(algorithm.W_b)
    steps_c, rows_c = eliminate(algorithm.W_c)
    for _ in range(5):
        a = rng.integers(-9, 10, (algorithm.m, algorithm.k))
        b = rng.integers(-9, 10, (algorithm.k, algorithm.n))
        products = evaluate_program(steps_a, rows_a, a) * evaluate_program(steps_b, rows_b, b)
        c = evaluate_program(steps_c, rows_c, products).reshape(algorithm.m, algorithm.n)
        np.testing.assert_array_equal(c, a @ b)


def test_cse_shares_a_repeated_pair():
    steps, rows = eliminate(np.array([[1, -1, 1], [1, -1, 0], [-1, 1, 1]]))
    assert steps[0] == (0, 1, -1)
    assert cse_additions(np.array([[1, -1, 1], [1, -1, 0], [-1, 1, 1]]),
                         np.eye(2, dtype=int), np.eye(2, dtype=int))['W_a'] == 3  # 1 + 1 + 0 + 1


def test_default_method_per_format():
    assert default_method(2, 2, 2) == 'spn'
    assert default_method(3, 3, 3) == 'flip' and default_method(2, 2, 3) == 'flip'


def test_cli_method_flip_writes_an_exact_algorithm_with_costs(tmp_path, capsys):
    path = tmp_path / 'found.json'
    code = main(['--m', '2', '--k', '2', '--n', '3', '--rank', '11', '--method', 'flip',
                 '--time_limit', '60', '--quiet', '--json', str(path)])
    assert code == 0
    text = capsys.readouterr().out
    assert 'exact: yes' in text and 'after greedy pairwise CSE' in text
    data = json.loads(path.read_text())
    algorithm = load_algorithm(path)
    assert algorithm.rank == 11 and is_exact(algorithm)
    assert data['additions'] == evaluate(algorithm)['additions']
    assert data['additions_cse'] == evaluate(algorithm)['additions_cse']


def test_cli_flip_start_from_a_file_and_refuse_a_wrong_format(tmp_path, capsys):
    start = tmp_path / 'naive.json'
    save_algorithm(naive_algorithm(2, 2, 2), start)
    assert main(['--m', '2', '--k', '2', '--n', '2', '--rank', '7', '--method', 'flip',
                 '--start', str(start), '--quiet', '--time_limit', '30']) == 0
    assert main(['--m', '2', '--k', '2', '--n', '3', '--rank', '11', '--method', 'flip',
                 '--start', str(start), '--quiet']) == 2


@pytest.mark.parametrize('make, size', [(laderman, 9), (lambda: load_algorithm(
    'strassen_gluon/algorithms/strassen_2x2x2.json'), 8), (laderman, 6)])
def test_apply_recursively_on_blocks_equals_the_integer_product(make, size):
    algorithm = make()
    rng = np.random.default_rng(1)
    a = rng.integers(-50, 50, (size, size))
    b = rng.integers(-50, 50, (size, size))
    np.testing.assert_array_equal(apply(algorithm, a, b), a @ b)
    levels = {9: 2, 8: 3, 6: 1}[size]  # 6 = 3 x 2: one level, then 2x2 blocks by @
    expected = algorithm.rank ** levels * (size // algorithm.m ** levels) ** 3
    assert apply_multiplications(algorithm, size, size, size) == expected
