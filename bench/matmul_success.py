"""Success rate and time of the exact fast-matmul search (strassen_gluon.matmul).

    python bench/matmul_success.py --seeds 20                    # 2x2x2 at rank 7
    python bench/matmul_success.py --seeds 20 --harder --harder-seeds 3 --budget 120
    python bench/matmul_success.py --seeds 0 --per-candidate 3     # single-run success rate

For 2x2x2 rank 7 it runs `learn` once per seed with the default restarts and configuration, and
reports the fraction of seeds that end with an exactly verified algorithm and the median / max
seconds to get there (wall clock inside the process: graph building and every exact check
included, `import mxnet` excluded; one full command-line run is timed separately). With
--harder it also tries 2x2x3/11, 2x3x3/15 and 3x3x3/23 with a time budget per seed (restarts
until found or out of time). With --flip it runs the flip-graph walk (--method flip) one seed at
a time on FLIP_FORMATS: the goal formats with --flip-budget seconds per seed, the report-only
formats (3x3x4/29, 2x4x4/26, 4x4x4/49) with --flip-report-budget, printing the lowest rank
reached per seed. It then verifies algorithms given from outside: the packaged
Strassen JSON and a 2x2x3 rank-11 algorithm written out below, through the command line.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from strassen_gluon.matmul import (ALGORITHMS_DIR, DEFAULT_RESTARTS, SearchConfig, apply,
                                   apply_multiplications, evaluate, learn, load_algorithm,
                                   main as matmul_main)
from strassen_gluon.matmul.flip import flip_search

HARDER = [(2, 2, 3, 11), (2, 3, 3, 15), (3, 3, 3, 23)]
# (m, k, n, best known rank with coefficients in {-1, 0, 1}, goal format?)
FLIP_FORMATS = [(2, 2, 2, 7, True), (2, 3, 3, 15, True), (2, 2, 4, 14, True),
                (3, 3, 3, 23, True), (3, 3, 4, 29, False), (2, 4, 4, 26, False),
                (4, 4, 4, 49, False)]

# 2x2x3 at rank 11, written by hand: Strassen on the first two columns of B (products 1-7),
# schoolbook on the third (products 8-11). Row-major vec: A = a11 a12 a21 a22,
# B = b11 b12 b13 b21 b22 b23, C = c11 c12 c13 c21 c22 c23.
HAND_2X2X3 = {
    'm': 2, 'k': 2, 'n': 3, 'rank': 11,
    'W_a': [[1, 0, 0, 1], [0, 0, 1, 1], [1, 0, 0, 0], [0, 0, 0, 1], [1, 1, 0, 0], [-1, 0, 1, 0],
            [0, 1, 0, -1], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
    'W_b': [[1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 0, 0], [0, 1, 0, 0, -1, 0], [-1, 0, 0, 1, 0, 0],
            [0, 0, 0, 0, 1, 0], [1, 1, 0, 0, 0, 0], [0, 0, 0, 1, 1, 0], [0, 0, 1, 0, 0, 0],
            [0, 0, 0, 0, 0, 1], [0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1]],
    'W_c': [[1, 0, 0, 1, -1, 0, 1, 0, 0, 0, 0],    # c11 = M1 + M4 - M5 + M7
            [0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0],     # c12 = M3 + M5
            [0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0],     # c13 = M8 + M9
            [0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0],     # c21 = M2 + M4
            [1, -1, 1, 0, 0, 1, 0, 0, 0, 0, 0],    # c22 = M1 - M2 + M3 + M6
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]],    # c23 = M10 + M11
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seeds', type=int, default=20, help='2x2x2 rank-7 runs (seeds 0..N-1)')
    parser.add_argument('--restarts', type=int, default=DEFAULT_RESTARTS)
    parser.add_argument('--harder', action='store_true', help='also try 2x2x3, 2x3x3, 3x3x3')
    parser.add_argument('--harder-seeds', type=int, default=3)
    parser.add_argument('--budget', type=float, default=120.0,
                        help='seconds per harder run (default %(default)s)')
    parser.add_argument('--population', type=int, default=SearchConfig().population)
    parser.add_argument('--per-candidate', type=int, default=0, metavar='SEEDS',
                        help='also run SEEDS full schedules (no early stop, one restart) of '
                             '2x2x2/7 and 2x2x3/11 and report the fraction of single '
                             'candidates that end exact')
    parser.add_argument('--quantizer', choices=('threshold', 'twn'),
                        default=SearchConfig().quantizer, help='quantizer of the ternary phase')
    parser.add_argument('--fp-steps', type=int, default=SearchConfig().fp_steps)
    parser.add_argument('--anneal-steps', type=int, default=SearchConfig().anneal_steps)
    parser.add_argument('--ternary-steps', type=int, default=SearchConfig().ternary_steps)
    parser.add_argument('--flip', action='store_true', help='run the flip-graph walk rows')
    parser.add_argument('--flip-seeds', type=int, default=5)
    parser.add_argument('--flip-budget', type=float, default=600.0,
                        help='seconds per seed on the goal formats (default %(default)s)')
    parser.add_argument('--flip-report-budget', type=float, default=120.0,
                        help='seconds per seed on 3x3x4, 2x4x4, 4x4x4 (default %(default)s)')
    parser.add_argument('--flip-only', default=None, metavar='MxKxN,...',
                        help='restrict the flip rows to these formats')
    parser.add_argument('--out', metavar='FILE', help='write all measurements as JSON')
    return parser.parse_args(argv)


def summarize(name, runs):
    times = [run['seconds'] for run in runs if run['found']]
    line = '%s: %d/%d found' % (name, len(times), len(runs))
    if times:
        line += ', seconds to exact: median %.1f, max %.1f' % (statistics.median(times), max(times))
        additions = sorted(run['additions'] for run in runs if run['found'])
        line += ', additions %s' % additions
    residuals = [run['best_residual'] for run in runs
                 if not run['found'] and 'best_residual' in run]
    if residuals:
        line += ', best residual of misses %s' % residuals
    print(line, flush=True)
    return line


def run_format(m, k, n, rank, seeds, restarts, config, time_limit):
    runs = []
    for seed in seeds:
        result = learn(m, k, n, rank, seed=seed, restarts=restarts, config=config,
                       time_limit=time_limit)
        run = {'seed': seed, 'found': result.found, 'seconds': round(result.seconds, 2),
               'restarts': result.restarts, 'best_residual': result.best_residual}
        if result.found:
            report = evaluate(result.algorithm)
            assert report['exact'] and report['ternary'], 'learn returned an inexact algorithm'
            run['additions'] = report['additions']
        print('  %dx%dx%d rank %d seed %d: %s in %.1f s, %d restart(s)%s'
              % (m, k, n, rank, seed, 'exact' if result.found else 'not found',
                 result.seconds, result.restarts,
                 ', %d additions' % run['additions'] if result.found
                 else ', best residual %d' % result.best_residual), flush=True)
        runs.append(run)
    return runs


def run_flip(m, k, n, rank, seeds, time_limit, found_algorithms):
    runs = []
    for seed in seeds:
        result = flip_search(m, k, n, rank, seed=seed, time_limit=time_limit)
        report = evaluate(result.algorithm)
        assert report['exact'] and report['ternary'], 'flip_search returned an inexact algorithm'
        run = {'seed': seed, 'found': result.found, 'rank': result.algorithm.rank,
               'seconds': round(result.seconds, 2), 'steps': result.steps,
               'additions': report['additions'], 'additions_cse': report['additions_cse']}
        print('  %dx%dx%d target %d seed %d: rank %d %s in %.1f s (%d flip attempts), '
              '%d additions, %d after CSE'
              % (m, k, n, rank, seed, run['rank'], 'reached' if result.found else 'best',
                 result.seconds, result.steps, run['additions'], run['additions_cse']),
              flush=True)
        if result.found:
            found_algorithms.setdefault((m, k, n), result.algorithm)
        runs.append(run)
    return runs


def applied_savings(algorithm, size):
    """Multiplications of apply() on size x size integer matrices vs size**3, checked exact."""
    rng = np.random.default_rng(0)
    a, b = (rng.integers(-100, 100, (size, size)) for _ in range(2))
    assert np.array_equal(apply(algorithm, a, b), a @ b), 'apply is not exact'
    used = apply_multiplications(algorithm, size, size, size)
    line = ('%dx%d integer product with the %dx%dx%d rank-%d algorithm (recursive blocks): '
            '%d multiplications instead of %d (%.1f%% saved), equal to A @ B'
            % (size, size, algorithm.m, algorithm.k, algorithm.n, algorithm.rank, used,
               size ** 3, 100.0 * (1 - used / size ** 3)))
    print(line, flush=True)
    return line


def summarize_flip(name, runs):
    line = summarize(name, runs)
    return line + ', ranks reached %s' % [run['rank'] for run in runs]


def per_candidate_rate(m, k, n, rank, seeds, config):
    """Fraction of single candidates (one SPN training each) exact after the full schedule."""
    population = config.population
    config = SearchConfig(**dict(vars(config), stop_early=False))
    counts = []
    for seed in seeds:
        result = learn(m, k, n, rank, seed=seed, restarts=1, config=config)
        counts.append(result.exact_candidates)
        print('  %dx%dx%d rank %d seed %d: %d of %d candidates exact (%.1f s)'
              % (m, k, n, rank, seed, result.exact_candidates, population, result.seconds),
              flush=True)
    total = population * len(counts)
    line = ('%dx%dx%d rank %d, single candidates after the full schedule: %d/%d exact (%.1f%%)'
            % (m, k, n, rank, sum(counts), total, 100.0 * sum(counts) / total))
    print(line, flush=True)
    return line, counts


def time_command_line():
    """Wall time of one whole `python -m strassen_gluon.matmul` run (imports included)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, '-m', 'strassen_gluon.matmul', '--m', '2', '--k', '2',
                           '--n', '2', '--rank', '7', '--quiet'], capture_output=True, text=True)
    return done.returncode, time.perf_counter() - start


def verify_external():
    print('\nexternal algorithms (python -m strassen_gluon.matmul --verify FILE):')
    codes = {}
    with tempfile.TemporaryDirectory() as folder:
        hand = Path(folder) / 'hand_2x2x3.json'
        hand.write_text(json.dumps(HAND_2X2X3))
        for path in (ALGORITHMS_DIR / 'strassen_2x2x2.json', hand):
            codes[path.name] = matmul_main(['--verify', str(path)])
    return codes


def main(argv=None):
    args = parse_args(argv)
    config = SearchConfig(population=args.population, quantizer=args.quantizer,
                          fp_steps=args.fp_steps, anneal_steps=args.anneal_steps,
                          ternary_steps=args.ternary_steps)
    results = {'config': vars(config), 'restarts': args.restarts}
    lines = []
    if args.seeds > 0:
        print('2x2x2 rank 7, %d seeds, %d restart(s) x population %d:'
              % (args.seeds, args.restarts, config.population), flush=True)
        runs = run_format(2, 2, 2, 7, range(args.seeds), args.restarts, config, None)
        results['2x2x2x7'] = runs
        lines.append(summarize('2x2x2 rank 7', runs))
        code, seconds = time_command_line()
        lines.append('one full command-line run (imports included): exit %d, %.1f s'
                     % (code, seconds))
        print(lines[-1], flush=True)
    if args.harder:
        for m, k, n, rank in HARDER:
            print('%dx%dx%d rank %d, %d seeds, budget %.0f s each:'
                  % (m, k, n, rank, args.harder_seeds, args.budget), flush=True)
            runs = run_format(m, k, n, rank, range(args.harder_seeds), 10 ** 6, config,
                              args.budget)
            results['%dx%dx%dx%d' % (m, k, n, rank)] = runs
            lines.append(summarize('%dx%dx%d rank %d' % (m, k, n, rank), runs))
    found_algorithms = {}
    if args.flip:
        only = set(args.flip_only.split(',')) if args.flip_only else None
        for m, k, n, rank, goal in FLIP_FORMATS:
            if only is not None and '%dx%dx%d' % (m, k, n) not in only:
                continue
            budget = args.flip_budget if goal else args.flip_report_budget
            print('flip walk %dx%dx%d rank %d, %d seeds, budget %.0f s each:'
                  % (m, k, n, rank, args.flip_seeds, budget), flush=True)
            runs = run_flip(m, k, n, rank, range(args.flip_seeds), budget, found_algorithms)
            results['flip_%dx%dx%dx%d' % (m, k, n, rank)] = runs
            lines.append(summarize_flip('flip %dx%dx%d rank %d' % (m, k, n, rank), runs))
    lines.append(applied_savings(load_algorithm(ALGORITHMS_DIR / 'strassen_2x2x2.json'), 16))
    if (3, 3, 3) in found_algorithms:
        lines.append(applied_savings(found_algorithms[(3, 3, 3)], 9))
    if args.per_candidate:
        for m, k, n, rank in [(2, 2, 2, 7), (2, 2, 3, 11)]:
            line, counts = per_candidate_rate(m, k, n, rank, range(args.per_candidate), config)
            results['per_candidate_%dx%dx%dx%d' % (m, k, n, rank)] = counts
            lines.append(line)
    results['verify_exit_codes'] = verify_external()
    print('\nsummary:\n' + '\n'.join(lines))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == '__main__':
    main()
