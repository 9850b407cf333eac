"""The command line: python -m strassen_gluon.matmul.

Exit status: 0 an exact algorithm was found (or --verify: the file's algorithm is exact); 1 none
was found (--verify: not exact); 2 bad input: an option out of range, an input file that cannot
be read or is malformed, an output file (--json) that cannot be written (checked before the
search starts); 130 Ctrl-C. Options are spelled with underscores (--time_limit); the older dash
spellings (--time-limit) are accepted as aliases.
"""
import sys
from dataclasses import fields

from .. import cli
from ..cli import at_least
from ..errors import UsageError
from ..files import require_writable
from .algebra import (describe, evaluate, load_algorithm, matmul_tensor, rank_lower_bound,
                      save_algorithm)
from .flip import DEFAULT_PLATEAU, flip_search
from .spn import DEFAULT_RESTARTS, SearchConfig, learn

METHODS = ('auto', 'spn', 'flip')
DEFAULT_FLIP_TIME_LIMIT = 600.0


def default_method(m, k, n):
    """'spn' (the paper's learner) up to 2x2x2, where it finds rank 7 in every seed measured;
    'flip' (the flip-graph walk) for larger formats, where the learner falls short."""
    return 'spn' if m * k * n <= 8 else 'flip'


def parse_args(argv=None):
    defaults = SearchConfig()
    parser = cli.Parser(
        prog='python -m strassen_gluon.matmul',
        description='Learn an exact {-1,0,1} algorithm multiplying an MxK by a KxN matrix with '
                    'RANK multiplications, verified in integer arithmetic; or verify one '
                    '(--verify). Exit code: 0 found/exact, 1 not found/not exact, 2 bad input.')
    parser.add_argument('--m', type=at_least(1), help='rows of A')
    parser.add_argument('--k', type=at_least(1), help='columns of A = rows of B')
    parser.add_argument('--n', type=at_least(1), help='columns of B')
    parser.add_argument('--rank', type=at_least(1), help='number of multiplications R')
    parser.add_argument('--method', choices=METHODS, default='auto',
                        help="search: 'spn' (the paper's bilinear SPN), 'flip' (flip-graph "
                             "random walk) or 'auto': spn for 2x2x2 and smaller, flip for "
                             "larger formats (default %(default)s)")
    parser.add_argument('--seed', type=at_least(0), default=0,
                        help='seed of the search; restart i uses a seed derived from (SEED, i)')
    parser.add_argument('--restarts', type=at_least(1), default=DEFAULT_RESTARTS,
                        help='fresh populations to try (default %(default)s)')
    parser.add_argument('--time_limit', '--time-limit', type=float, default=None, metavar='SECONDS',
                        help='give up after this many seconds in total (flip default: %d)'
                             % DEFAULT_FLIP_TIME_LIMIT)
    parser.add_argument('--json', metavar='FILE', help='write the algorithm found to FILE')
    parser.add_argument('--verify', metavar='FILE',
                        help='check and evaluate the algorithm in FILE instead of learning')
    parser.add_argument('--quiet', action='store_true', help='print only the final result')
    flip = parser.add_argument_group('flip-graph walk (--method flip)')
    flip.add_argument('--start', metavar='FILE',
                      help='start the walk from the exact algorithm in FILE (default: schoolbook)')
    flip.add_argument('--plateau', type=at_least(1), default=DEFAULT_PLATEAU,
                      help='flip attempts without a rank drop before a restart from a best '
                           'scheme with a plus transition [%(default)s]')
    group = parser.add_argument_group('SPN hyperparameters, --method spn (defaults in brackets)')
    group.add_argument('--population', type=at_least(1), default=defaults.population,
                       help='candidates trained at once per restart [%(default)s]')
    group.add_argument('--fp_steps', '--fp-steps', type=at_least(0), default=defaults.fp_steps,
                       help='full-precision steps [%(default)s]')
    group.add_argument('--anneal_steps', '--anneal-steps', type=at_least(0),
                       default=defaults.anneal_steps,
                       help='steps while the pull towards {-1,0,1} grows [%(default)s]')
    group.add_argument('--ternary_steps', '--ternary-steps', type=at_least(0),
                       default=defaults.ternary_steps,
                       help='steps with a ternarised forward pass [%(default)s]')
    group.add_argument('--lr', type=float, default=defaults.lr,
                       help='Adam learning rate [%(default)s]')
    group.add_argument('--batch_size', '--batch-size', type=at_least(1),
                       default=defaults.batch_size,
                       help='random matrix pairs per step [%(default)s]')
    group.add_argument('--data', choices=('gaussian', 'basis'), default=defaults.data,
                       help='training matrices: Gaussian, or all pairs of unit matrices '
                            '[%(default)s]')
    group.add_argument('--pull', type=float, default=defaults.pull,
                       help='final weight of the pull towards {-1,0,1} [%(default)s]')
    group.add_argument('--quantizer', choices=('threshold', 'twn'), default=defaults.quantizer,
                       help='quantizer of the ternary phase [%(default)s]')
    args = parser.parse_args(argv)
    if args.verify is None:
        missing = [name for name in ('m', 'k', 'n', 'rank') if getattr(args, name) is None]
        if missing:
            parser.error('learning needs %s (or use --verify FILE)'
                         % ', '.join('--' + name for name in missing))
        bound = rank_lower_bound(args.m, args.k, args.n)
        if args.rank < bound:
            parser.error('no %dx%dx%d algorithm has rank %d: every one needs at least '
                         'max(MK, KN, MN) = %d multiplications'
                         % (args.m, args.k, args.n, args.rank, bound))
    if args.verify is None and args.method == 'auto':
        args.method = default_method(args.m, args.k, args.n)
    if args.time_limit is not None and not args.time_limit > 0:
        parser.error('--time_limit must be positive')
    try:
        args.config = SearchConfig(**{f.name: getattr(args, f.name) for f in fields(SearchConfig)
                                      if hasattr(args, f.name)})
    except ValueError as error:
        parser.error(str(error))
    return args


def _print_evaluation(report, out):
    print('%dx%dx%d algorithm, rank %d (naive: %d)'
          % (report['m'], report['k'], report['n'], report['rank'], report['naive_rank']), file=out)
    if report['exact']:
        print('exact: yes (all %d Brent equations hold)' % report['equations'], file=out)
    else:
        print('exact: no (%d of %d Brent equations violated, residual %d)'
              % (report['violated'], report['equations'], report['residual']), file=out)
    print('ternary: %s' % ('yes' if report['ternary'] else 'no (entries outside {-1,0,1})'),
          file=out)
    by = report['additions_by_matrix']
    print('additions: %d (W_a %d, W_b %d, W_c %d; naive algorithm: %d)'
          % (report['additions'], by['W_a'], by['W_b'], by['W_c'], report['naive_additions']),
          file=out)
    cse = report['additions_cse_by_matrix']
    print('additions after greedy pairwise CSE: %d (W_a %d, W_b %d, W_c %d)'
          % (report['additions_cse'], cse['W_a'], cse['W_b'], cse['W_c']), file=out)


def main(argv=None, out=None):
    """Run the command line; returns the exit status (module docstring)."""
    args = parse_args(argv)
    outcome = []
    status = cli.run_command(lambda: outcome.append(run(args, out or sys.stdout)))
    return outcome[0] if outcome else status


def read_algorithm(path, option):
    """The algorithm in the file an option names; UsageError (one line) if it cannot be read."""
    try:
        return load_algorithm(path)
    except OSError as error:
        raise UsageError('%s %s: %s' % (option, path, error.strerror or error)) from None
    except ValueError as error:
        raise UsageError('%s %s' % (option, error)) from None


def run(args, out):
    """Verify or search as the parsed `args` say; returns 0 (found/exact) or 1 (not)."""
    if args.verify is not None:
        algorithm = read_algorithm(args.verify, '--verify')
        report = evaluate(algorithm)
        print('%s:' % args.verify, file=out)
        _print_evaluation(report, out)
        return 0 if report['exact'] else 1
    if args.json:  # before the search: a bad path must not cost the algorithm found
        require_writable(args.json, '--json')
    log = None if args.quiet else (lambda line: print(line, file=out, flush=True))
    if args.method == 'flip':
        return _run_flip(args, log, out)
    if log:
        c = args.config
        log('searching %dx%dx%d rank %d with the SPN: seed %d, %d restart(s) x population %d, '
            'steps %d+%d+%d' % (args.m, args.k, args.n, args.rank, args.seed, args.restarts,
                                c.population, c.fp_steps, c.anneal_steps, c.ternary_steps))
    result = learn(args.m, args.k, args.n, args.rank, seed=args.seed, restarts=args.restarts,
                   config=args.config, time_limit=args.time_limit, log=log)
    if not result.found:
        print('not found: no exact %dx%dx%d algorithm of rank %d after %d restart(s), %.1f s; '
              'best residual %d (sum of squared errors over the %d Brent equations of the '
              'rounded candidates)' % (args.m, args.k, args.n, args.rank, result.restarts,
                                        result.seconds, result.best_residual,
                                        matmul_tensor(args.m, args.k, args.n).size), file=out)
        return 1
    print('found: exact %dx%dx%d algorithm of rank %d in %.1f s (%d restart(s))'
          % (args.m, args.k, args.n, args.rank, result.seconds, result.restarts), file=out)
    _report_found(result.algorithm, args, out)
    return 0


def _run_flip(args, log, out):
    start = None
    if args.start is not None:
        start = read_algorithm(args.start, '--start')
        if (start.m, start.k, start.n) != (args.m, args.k, args.n):
            raise UsageError('--start %s is a %dx%dx%d algorithm, not %dx%dx%d'
                             % (args.start, start.m, start.k, start.n, args.m, args.k, args.n))
    time_limit = args.time_limit if args.time_limit is not None else DEFAULT_FLIP_TIME_LIMIT
    if log:
        log('searching %dx%dx%d rank %d with the flip-graph walk: seed %d, from %s, '
            'time limit %.0f s' % (args.m, args.k, args.n, args.rank, args.seed,
                                   args.start or 'the schoolbook algorithm', time_limit))
    try:
        result = flip_search(args.m, args.k, args.n, args.rank, seed=args.seed, start=start,
                             time_limit=time_limit, plateau=args.plateau, log=log)
    except ValueError as error:  # the start is not exact or not ternary
        raise UsageError('--start %s: %s' % (args.start, error) if args.start else str(error)) \
            from None
    if not result.found:
        print('not found: no exact %dx%dx%d algorithm of rank %d after %d flip attempts, '
              '%.1f s; lowest rank reached %d'
              % (args.m, args.k, args.n, args.rank, result.steps, result.seconds,
                 result.algorithm.rank), file=out)
        if args.json:  # the best reached is still exact and may be useful
            _write(result.algorithm, args.json, out)
        return 1
    print('found: exact %dx%dx%d algorithm of rank %d in %.1f s (%d flip attempts)'
          % (args.m, args.k, args.n, result.algorithm.rank, result.seconds, result.steps),
          file=out)
    _report_found(result.algorithm, args, out)
    return 0


def _report_found(algorithm, args, out):
    _print_evaluation(evaluate(algorithm), out)
    for line in describe(algorithm):
        print('  ' + line, file=out)
    if args.json:
        _write(algorithm, args.json, out)


def _write(algorithm, path, out):
    """Save to --json; the path was checked before the search, so this fails only if the
    folder changed meanwhile."""
    try:
        save_algorithm(algorithm, path)
    except OSError as error:
        raise UsageError('--json %s: %s' % (path, error.strerror or error)) from None
    print('wrote the rank-%d algorithm to %s' % (algorithm.rank, path), file=out)
