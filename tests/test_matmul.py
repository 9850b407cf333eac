"""Exact verification, algorithm files, the bilinear SPN and the matmul command line."""
import json

import mxnet as mx
import numpy as np
import pytest

from strassen_gluon.errors import EXIT_DATA

from strassen_gluon.config import Phase
from strassen_gluon.matmul import (ALGORITHMS_DIR, Algorithm, BilinearSPN, brent_residual,
                                   canonical_signs, count_additions, describe, evaluate,
                                   is_exact, learn, load_algorithm, main, matmul_tensor,
                                   multiply, naive_algorithm, save_algorithm, SearchConfig, apply)

# Winograd's variant of Strassen's algorithm, written out here from its formulas
# (S4 = A12 - S2, T4 = T2 - B21, C12 = M1 + M6 + M5 + M3, ...), row-major vec order.
WINOGRAD = dict(
    m=2, k=2, n=2, rank=7,
    W_a=[[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, -1, -1], [0, 0, 0, 1],
         [0, 0, 1, 1], [-1, 0, 1, 1], [1, 0, -1, 0]],
    W_b=[[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, -1, -1, 1],
         [-1, 1, 0, 0], [1, -1, 0, 1], [0, -1, 0, 1]],
    W_c=[[1, 1, 0, 0, 0, 0, 0], [1, 0, 1, 0, 1, 1, 0],
         [1, 0, 0, -1, 0, 1, 1], [1, 0, 0, 0, 1, 1, 1]])


def winograd():
    return Algorithm.from_dict(WINOGRAD)


def test_tensor_reproduces_matrix_product():
    rng = np.random.default_rng(0)
    a, b = rng.integers(-5, 5, (2, 3)), rng.integers(-5, 5, (3, 4))
    t = matmul_tensor(2, 3, 4)
    assert t.shape == (6, 12, 8) and t.sum() == 2 * 3 * 4
    np.testing.assert_array_equal(np.einsum('xyz,x,y->z', t, a.ravel(), b.ravel()),
                                  (a @ b).ravel())


@pytest.mark.parametrize('size', [(1, 1, 1), (2, 2, 2), (2, 3, 4), (3, 1, 2)])
def test_naive_algorithm_is_exact_with_rank_mkn(size):
    m, k, n = size
    naive = naive_algorithm(m, k, n)
    assert naive.rank == m * k * n and is_exact(naive)
    assert sum(count_additions(naive).values()) == m * n * (k - 1)
    report = evaluate(naive)
    assert report['exact'] and report['violated'] == 0 and report['residual'] == 0


def test_rank7_algorithm_written_out_is_exact_and_multiplies():
    alg = winograd()
    assert alg.rank == 7 and alg.ternary and is_exact(alg)
    rng = np.random.default_rng(1)
    for _ in range(5):
        a, b = rng.integers(-100, 100, (2, 2)), rng.integers(-100, 100, (2, 2))
        np.testing.assert_array_equal(multiply(alg, a, b), a @ b)
    # Naive count (no reuse of S1, T1, U1, ...): 7 + 7 + 10, not Winograd's 15.
    assert count_additions(alg) == {'W_a': 7, 'W_b': 7, 'W_c': 10}


def test_packaged_strassen_is_exact_with_18_additions():
    alg = load_algorithm(ALGORITHMS_DIR / 'strassen_2x2x2.json')
    report = evaluate(alg)
    assert report['exact'] and report['ternary'] and report['rank'] == 7
    assert report['additions'] == 18
    assert report['additions_by_matrix'] == {'W_a': 5, 'W_b': 5, 'W_c': 8}
    lines = describe(alg)
    assert lines[0] == 'M1 = (A11 + A22) (B11 + B22)'
    assert 'C11 = M1 + M4 - M5 + M7' in lines


@pytest.mark.parametrize('make', [winograd, lambda: load_algorithm(
    ALGORITHMS_DIR / 'strassen_2x2x2.json')])
def test_every_single_coefficient_change_is_rejected(make):
    alg = make()
    rejected = 0
    for name in ('W_a', 'W_b', 'W_c'):
        for index in np.ndindex(getattr(alg, name).shape):
            for delta in (-1, 1):
                changed = make()
                getattr(changed, name)[index] += delta
                assert not is_exact(changed), (name, index, delta)
                assert brent_residual(changed).any()
                rejected += 1
    assert rejected == 2 * (28 + 28 + 28)


def test_near_miss_report_counts_violated_equations():
    alg = winograd()
    alg.W_c[0, 0] = 0  # C11 loses M1 = A11 B11: exactly one equation fails
    report = evaluate(alg)
    assert not report['exact']
    assert report['violated'] == 1 and report['residual'] == 1


def test_additions_ignore_zero_rows_and_count_nonzeros_minus_one():
    alg = Algorithm(1, 1, 2, [[1], [0], [-1]], [[1, 1], [0, 0], [1, -1]],
                    [[1, 0, 1], [0, 0, -1]])
    assert count_additions(alg) == {'W_a': 0, 'W_b': 2, 'W_c': 1}


def test_canonical_signs_keep_exactness_and_make_factors_start_positive():
    alg = winograd()
    alg.W_a[2] *= -1
    alg.W_c[:, 2] *= -1
    alg.W_b[4] *= -1
    alg.W_c[:, 4] *= -1
    fixed = canonical_signs(alg)
    assert is_exact(alg) and is_exact(fixed)
    for w in (fixed.W_a, fixed.W_b):
        assert all(row[np.flatnonzero(row)[0]] > 0 for row in w)


def test_json_round_trip(tmp_path):
    path = tmp_path / 'alg.json'
    save_algorithm(winograd(), path)
    data = json.loads(path.read_text())
    assert set(data) == {'m', 'k', 'n', 'rank', 'additions', 'additions_cse', 'W_a', 'W_b', 'W_c'}
    report = evaluate(winograd())
    assert (data['additions'], data['additions_cse']) == (report['additions'],
                                                          report['additions_cse'])
    assert data['W_a'] == WINOGRAD['W_a'] and data['rank'] == 7
    again = load_algorithm(path)
    for name in ('W_a', 'W_b', 'W_c'):
        np.testing.assert_array_equal(getattr(again, name), WINOGRAD[name])


@pytest.mark.parametrize('change, message', [
    (lambda d: d.pop('W_c'), 'missing W_c'),
    (lambda d: d.update(rank=6), 'rank'),
    (lambda d: d.update(m=0), 'm must be an integer >= 1'),
    (lambda d: d['W_a'][0].__setitem__(0, 0.5), 'integers'),
    (lambda d: d['W_b'][0].__setitem__(0, True), 'integers'),
    (lambda d: d['W_b'].pop(), 'W_b has shape'),
    (lambda d: d['W_c'][1].pop(), 'different lengths'),
])
def test_malformed_algorithms_are_refused(tmp_path, change, message):
    data = json.loads(json.dumps(WINOGRAD))
    change(data)
    path = tmp_path / 'bad.json'
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        load_algorithm(path)


def test_spn_full_phase_computes_the_bilinear_form():
    spn = BilinearSPN(2, 3, 2, rank=5, population=3)
    spn.initialize()
    spn.hybridize()
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    out = spn(mx.nd.array(a), mx.nd.array(b)).asnumpy()
    wa, wb, wc = (p.data().asnumpy() for p in (spn.wa, spn.wb, spn.wc))
    expected = np.einsum('pzr,prs->psz', wc, (wa @ a.T) * (wb @ b.T))
    assert out.shape == (3, 4, 4)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_spn_ternary_phase_with_strassen_weights_multiplies_exactly():
    alg = load_algorithm(ALGORITHMS_DIR / 'strassen_2x2x2.json')
    spn = BilinearSPN(2, 2, 2, rank=7, population=1, quantizer='threshold')
    spn.initialize()
    spn.hybridize()
    # Latent weights 0.8 x the algorithm: full precision is wrong, ternarised exact.
    for param, w in ((spn.wa, alg.W_a), (spn.wb, alg.W_b), (spn.wc, alg.W_c)):
        param.set_data(mx.nd.array(0.8 * w[None]))
    rng = np.random.default_rng(3)
    a, b = rng.integers(-9, 9, (5, 2, 2)), rng.integers(-9, 9, (5, 2, 2))
    target = np.matmul(a, b).reshape(5, 4)
    x, y = mx.nd.array(a.reshape(5, 4)), mx.nd.array(b.reshape(5, 4))
    assert np.abs(spn(x, y).asnumpy()[0] - target).max() > 1
    spn.phase = Phase.TERNARY
    np.testing.assert_array_equal(spn(x, y).asnumpy()[0], target)
    with pytest.raises(ValueError, match='FULL and TERNARY'):
        spn.phase = Phase.DENSE


@pytest.mark.parametrize('argv, message', [
    (['--m', '2', '--k', '2', '--n', '2', '--rank', '0'], 'must be >= 1'),
    (['--m', '0', '--k', '2', '--n', '2', '--rank', '7'], 'must be >= 1'),
    (['--m', '2', '--k', '-1', '--n', '2', '--rank', '7'], 'must be >= 1'),
    (['--m', '2', '--k', '2', '--n', '2'], 'needs --rank'),
    (['--m', '2', '--k', '2', '--n', '2', '--rank', '3'], 'at least max'),
    (['--m', '2', '--k', '2', '--n', '2', '--rank', '7', '--lr', '0'], 'lr must be positive'),
])
def test_cli_refuses_impossible_requests(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_verify(tmp_path, capsys):
    good = tmp_path / 'winograd.json'
    save_algorithm(winograd(), good)
    assert main(['--verify', str(good)]) == 0
    out = capsys.readouterr().out
    assert 'exact: yes' in out and 'rank 7' in out and 'additions: 24' in out

    near = winograd()
    near.W_b[3, 0] = 0
    bad = tmp_path / 'near.json'
    save_algorithm(near, bad)
    assert main(['--verify', str(bad)]) == 1
    assert 'exact: no' in capsys.readouterr().out

    broken = tmp_path / 'broken.json'
    broken.write_text('{"m": 2')
    assert main(['--verify', str(broken)]) == 2
    assert 'not valid JSON' in capsys.readouterr().err


def test_cli_learns_strassen_rank_7(tmp_path, capsys):
    path = tmp_path / 'found.json'
    assert main(['--m', '2', '--k', '2', '--n', '2', '--rank', '7', '--seed', '3',
                 '--json', str(path)]) == 0
    out = capsys.readouterr().out
    assert 'found: exact 2x2x2 algorithm of rank 7' in out and 'restart 1/' in out
    alg = load_algorithm(path)
    assert alg.rank == 7 and alg.ternary and is_exact(alg)


def test_cli_reports_not_found_with_residual(tmp_path, capsys):
    path = tmp_path / 'none.json'
    code = main(['--m', '2', '--k', '2', '--n', '2', '--rank', '5', '--restarts', '1',
                 '--population', '4', '--fp_steps', '100', '--anneal_steps', '200',
                 '--ternary_steps', '100', '--json', str(path)])
    assert code == 1
    out = capsys.readouterr().out
    assert 'not found' in out
    residual = int(out.split('best residual ')[-1].split()[0])
    assert residual > 0  # rank 5 < 7 cannot be exact
    assert not path.exists()


def test_learn_time_limit_stops_without_result():
    config = SearchConfig(population=2, fp_steps=50, anneal_steps=10 ** 6, ternary_steps=0)
    result = learn(2, 2, 2, 6, seed=0, restarts=5, config=config, time_limit=1.0)
    assert not result.found and result.best_residual > 0
    assert result.restarts == 1 and result.seconds < 20


def test_full_schedule_runs_every_step_and_counts_exact_candidates():
    lines = []
    config = SearchConfig(population=8, fp_steps=1000, anneal_steps=1500, ternary_steps=500,
                          stop_early=False)
    result = learn(2, 2, 2, 7, seed=1, restarts=1, config=config, log=lines.append)
    assert ' 3000 steps' in lines[0]
    assert 0 <= result.exact_candidates <= 8
    assert result.found == (result.exact_candidates > 0)
    if result.found:
        assert is_exact(result.algorithm) and result.best_residual == 0


def _strassen_with_one_change():
    alg = load_algorithm(ALGORITHMS_DIR / 'strassen_2x2x2.json')
    alg.W_c[0, 0] += 1
    return alg


def test_multiply_and_apply_refuse_an_algorithm_that_is_not_exact():
    a, b = np.array([[1, 2], [3, 4]]), np.array([[5, 6], [7, 8]])
    changed = _strassen_with_one_change()
    for compute in (multiply, apply):
        with pytest.raises(ValueError, match='not exact: 4 of 64 Brent equations'):
            compute(changed, a, b)
    changed.W_c[0, 0] -= 1  # changed back in place: accepted again (checked on every call)
    np.testing.assert_array_equal(apply(changed, a, b), a @ b)


def test_one_integer_rule_for_json_python_lists_and_numpy(tmp_path, capsys):
    as_floats = json.loads(json.dumps(WINOGRAD))
    for key in ('W_a', 'W_b', 'W_c'):
        as_floats[key] = [[float(v) for v in row] for row in as_floats[key]]
    path = tmp_path / 'floats.json'
    path.write_text(json.dumps(as_floats))
    assert '1.0' in path.read_text()
    from_json = load_algorithm(path)
    from_lists = Algorithm(2, 2, 2, as_floats['W_a'], as_floats['W_b'], as_floats['W_c'])
    from_numpy = Algorithm(2, 2, 2, *(np.array(as_floats[k]) for k in ('W_a', 'W_b', 'W_c')))
    for alg in (from_json, from_lists, from_numpy):
        assert alg.W_a.dtype == np.int64 and is_exact(alg)
        np.testing.assert_array_equal(alg.W_c, WINOGRAD['W_c'])
    assert main(['--verify', str(path)]) == 0
    assert 'exact: yes' in capsys.readouterr().out
    # ... and what is refused is refused from every source.
    w_b = np.array(WINOGRAD['W_b'])
    for bad in (0.5, np.nan, True):
        lists = json.loads(json.dumps(WINOGRAD['W_a']))
        lists[0][0] = bad
        with pytest.raises(ValueError, match='integers'):
            Algorithm(2, 2, 2, lists, w_b, WINOGRAD['W_c'])
        array = np.array(lists, dtype=float) if bad is not True else np.array(lists) != 0
        with pytest.raises(ValueError, match='integers'):
            Algorithm(2, 2, 2, array, w_b, WINOGRAD['W_c'])


@pytest.mark.parametrize('json_path, message', [
    ('/nonexistent/x.json', 'the folder /nonexistent does not exist'),
    ('.', 'that is a folder'),
])
def test_cli_checks_the_json_path_before_searching(json_path, message, monkeypatch, capsys):
    def no_search(*args, **kwargs):
        raise AssertionError('the search started')
    monkeypatch.setattr('strassen_gluon.matmul.cli.learn', no_search)
    monkeypatch.setattr('strassen_gluon.matmul.cli.flip_search', no_search)
    for method in ('spn', 'flip'):
        assert main(['--m', '2', '--k', '2', '--n', '2', '--rank', '7', '--method', method,
                     '--json', json_path]) == EXIT_DATA
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('error: --json %s: ' % json_path), lines
        assert message in lines[0]


def test_cli_underscore_options_with_the_old_dash_spellings_as_aliases():
    from strassen_gluon.matmul import parse_args
    base = ['--m', '2', '--k', '2', '--n', '2', '--rank', '7']
    new = parse_args(base + ['--fp_steps', '5', '--anneal_steps', '6', '--ternary_steps', '7',
                             '--batch_size', '3', '--time_limit', '9'])
    old = parse_args(base + ['--fp-steps', '5', '--anneal-steps', '6', '--ternary-steps', '7',
                             '--batch-size', '3', '--time-limit', '9'])
    assert new.config == old.config == SearchConfig(fp_steps=5, anneal_steps=6, ternary_steps=7,
                                                    batch_size=3)
    assert new.time_limit == old.time_limit == 9


@pytest.mark.parametrize('argv, message', [
    (['--seed', '-1'], '--seed: must be >= 0'),
    (['--lr', 'inf'], 'lr must be positive and finite'),
    (['--time_limit', '0'], '--time_limit must be positive'),
    (['--start', '/nonexistent.json', '--method', 'flip'], '--start /nonexistent.json: No such'),
])
def test_cli_usage_errors_exit_2_with_one_message(argv, message, capsys):
    try:
        code = main(['--m', '2', '--k', '2', '--n', '2', '--rank', '7', '--quiet'] + argv)
    except SystemExit as exit_info:
        code = exit_info.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and 'Traceback' not in err
