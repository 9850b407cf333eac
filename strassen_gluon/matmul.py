"""Learn exact fast matrix-multiplication algorithms with a bilinear SPN, and verify them exactly.

An algorithm of rank R for multiplying an M x K matrix A by a K x N matrix B is three integer
matrices W_a (R x MK), W_b (R x KN) and W_c (MN x R) such that, for every A and B,

    vec(AB) = W_c [(W_b vec B) ⊙ (W_a vec A)],

with vec taken row-major (numpy's order: vec(A)[i*K + j] = A[i, j]). It costs R multiplications.
The identity holds for all A, B exactly when the Brent equations hold:

    sum_r W_a[r, i*K+j] W_b[r, j'*N+l] W_c[i'*N+l', r] = δ(i,i') δ(j,j') δ(l,l')

for all indices; :func:`brent_residual` checks them in integer arithmetic, so "exact" here is a
proof, not a tolerance. Strassen's algorithm is the 2x2x2 case with R = 7 (file
``algorithms/strassen_2x2x2.json``).

Learning (:func:`learn`) trains the SPN of the paper with both inputs data-dependent (the
original's SumProdPlain, :class:`BilinearSPN`) on random Gaussian matrices with the squared error
of vec(AB), in three phases per restart:

1. full precision: Adam on the error alone;
2. annealing: a penalty λ·Σ(w - q(w))² pulls every entry towards its nearest value in {-1, 0, 1}
   (q is the library's fixed-threshold quantizer), with λ growing from 0 to ``pull``;
3. ternary: the forward pass uses the ternarised matrices (``quant.fake_quantize``, straight-through
   gradients), so the loss is that of the ternary algorithm itself.

The pull does the work (measured on 2 CPU cores, 3 populations of 64): on 2x2x2 rank 7, 174 of
192 single candidates end exact with it; with the paper's recipe alone (3000 full-precision
steps, then 5000 ternary steps with straight-through gradients, no pull) 2 of 128 with the fixed
threshold and 0 of 128 with TWN. Without the ternary phase, 2x2x3 rank 11 gave 27 instead of 28
exact of 192, and TWN there gave 26.

From the second phase on, every ``check_every`` steps the matrices are rounded to {-1, 0, 1}
(scale exactly 1) and verified exactly; the search stops at the first exact algorithm. A restart
trains a *population* of independent candidates at once (a leading axis on every weight):
Adam is elementwise and the loss is a sum over candidates, so this equals separate runs, at the
cost of about one run on a CPU for these tiny matrices.

Additions are counted naively (no reuse of common subexpressions): a row of W_a or W_b with
z > 0 nonzeros costs z - 1 additions (forming one factor), and a row of W_c with z > 0 nonzeros
costs z - 1 additions (forming one output entry). Strassen's algorithm counts 18 this way; the
naive rank-MKN algorithm counts MN(K - 1).
"""
import argparse
import json
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from .config import Phase
from .quant import fake_quantize, get_quantizer, threshold

ALGORITHMS_DIR = Path(__file__).resolve().parent / 'algorithms'
DEFAULT_RESTARTS = 3


# ---------------------------------------------------------------------------------------------
# Exact algebra, in numpy int64 (entries are small integers and sums have at most R terms).

def check_sizes(m, k, n, rank=None):
    """Raise ValueError unless the sizes (and rank) are integers >= 1."""
    named = [('m', m), ('k', k), ('n', n)] + ([('rank', rank)] if rank is not None else [])
    for name, value in named:
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError('%s must be an integer >= 1, not %r' % (name, value))


def rank_lower_bound(m, k, n):
    """max(MK, KN, MN): no algorithm has fewer multiplications (each flattening of the
    matrix-multiplication tensor has that rank, and a rank-R algorithm bounds it by R)."""
    return max(m * k, k * n, m * n)


def matmul_tensor(m, k, n):
    """The tensor T (MK x KN x MN) of M x K by K x N multiplication: T[i*K+j, j*N+l, i*N+l] = 1."""
    check_sizes(m, k, n)
    t = np.zeros((m * k, k * n, m * n), dtype=np.int64)
    i, j, l = np.meshgrid(np.arange(m), np.arange(k), np.arange(n), indexing='ij')
    t[i * k + j, j * n + l, i * n + l] = 1
    return t


@dataclass(eq=False)
class Algorithm:
    """A bilinear algorithm: integer W_a (R x MK), W_b (R x KN), W_c (MN x R)."""
    m: int
    k: int
    n: int
    W_a: np.ndarray
    W_b: np.ndarray
    W_c: np.ndarray

    def __post_init__(self):
        check_sizes(self.m, self.k, self.n)
        self.W_a, self.W_b, self.W_c = (_integer_matrix(w, name) for w, name in
                                        ((self.W_a, 'W_a'), (self.W_b, 'W_b'), (self.W_c, 'W_c')))
        rank = self.W_a.shape[0]
        expected = {'W_a': (rank, self.m * self.k), 'W_b': (rank, self.k * self.n),
                    'W_c': (self.m * self.n, rank)}
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError('%s has shape %s; for %dx%dx%d at rank %d it must be %s'
                                 % (name, getattr(self, name).shape, self.m, self.k, self.n,
                                    rank, shape))
        if rank < 1:
            raise ValueError('an algorithm needs rank >= 1 (W_a has no rows)')

    @property
    def rank(self):
        return self.W_a.shape[0]

    @property
    def ternary(self):
        return all(np.isin(w, (-1, 0, 1)).all() for w in (self.W_a, self.W_b, self.W_c))

    def to_dict(self):
        return {'m': self.m, 'k': self.k, 'n': self.n, 'rank': self.rank,
                'W_a': self.W_a.tolist(), 'W_b': self.W_b.tolist(), 'W_c': self.W_c.tolist()}

    @classmethod
    def from_dict(cls, data):
        """Build from {"m", "k", "n", "rank", "W_a", "W_b", "W_c"}; ValueError if malformed."""
        if not isinstance(data, dict):
            raise ValueError('an algorithm must be a JSON object, not %s' % type(data).__name__)
        missing = [key for key in ('m', 'k', 'n', 'rank', 'W_a', 'W_b', 'W_c') if key not in data]
        if missing:
            raise ValueError('algorithm is missing %s' % ', '.join(missing))
        check_sizes(data['m'], data['k'], data['n'], data['rank'])
        algorithm = cls(data['m'], data['k'], data['n'], data['W_a'], data['W_b'], data['W_c'])
        if algorithm.rank != data['rank']:
            raise ValueError('"rank" is %d but W_a has %d rows' % (data['rank'], algorithm.rank))
        return algorithm


def _integer_matrix(value, name):
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in 'iub':
            if value.dtype.kind == 'f' and np.array_equal(value, np.round(value)):
                value = np.round(value)
            else:
                raise ValueError('%s must hold integers, got dtype %s' % (name, value.dtype))
        array = value.astype(np.int64)
    else:
        rows = value if isinstance(value, (list, tuple)) else None
        if not rows or not all(isinstance(row, (list, tuple)) for row in rows):
            raise ValueError('%s must be a non-empty list of rows (lists of integers)' % name)
        for row in rows:
            for entry in row:
                if not isinstance(entry, int) or isinstance(entry, bool):
                    raise ValueError('%s must hold integers only, found %r' % (name, entry))
        if len({len(row) for row in rows}) != 1:
            raise ValueError('%s has rows of different lengths' % name)
        array = np.array(rows, dtype=np.int64)
    if array.ndim != 2:
        raise ValueError('%s must be a matrix, got %d dimensions' % (name, array.ndim))
    return array


def brent_residual(algorithm):
    """T̂ - T as an int64 tensor (MK x KN x MN); zero everywhere iff the algorithm is exact."""
    a = algorithm
    t_hat = np.einsum('rx,ry,zr->xyz', a.W_a, a.W_b, a.W_c)
    return t_hat - matmul_tensor(a.m, a.k, a.n)


def is_exact(algorithm):
    """True iff every Brent equation holds (integer arithmetic, no tolerance)."""
    return not brent_residual(algorithm).any()


def count_additions(algorithm):
    """Naive additions/subtractions: Σ (nonzeros - 1) over nonzero rows of W_a, W_b and W_c."""
    def rows(w):
        nnz = np.count_nonzero(w, axis=1)
        return int(np.sum(nnz[nnz > 0] - 1))
    return {'W_a': rows(algorithm.W_a), 'W_b': rows(algorithm.W_b), 'W_c': rows(algorithm.W_c)}


def evaluate(algorithm):
    """Exactness, cost and the size of the error of an algorithm, as a plain dict."""
    residual = brent_residual(algorithm)
    additions = count_additions(algorithm)
    return {'m': algorithm.m, 'k': algorithm.k, 'n': algorithm.n, 'rank': algorithm.rank,
            'exact': not residual.any(), 'ternary': algorithm.ternary,
            'equations': int(residual.size), 'violated': int(np.count_nonzero(residual)),
            'residual': int(np.sum(residual ** 2)),
            'additions': sum(additions.values()), 'additions_by_matrix': additions,
            'naive_rank': algorithm.m * algorithm.k * algorithm.n,
            'naive_additions': algorithm.m * algorithm.n * (algorithm.k - 1)}


def naive_algorithm(m, k, n):
    """The schoolbook algorithm: one multiplication per (i, j, l), rank MKN."""
    check_sizes(m, k, n)
    t = matmul_tensor(m, k, n)
    x, y, z = np.nonzero(t)
    rank = len(x)
    w_a = np.zeros((rank, m * k), np.int64)
    w_b = np.zeros((rank, k * n), np.int64)
    w_c = np.zeros((m * n, rank), np.int64)
    w_a[np.arange(rank), x] = 1
    w_b[np.arange(rank), y] = 1
    w_c[z, np.arange(rank)] = 1
    return Algorithm(m, k, n, w_a, w_b, w_c)


def canonical_signs(algorithm):
    """The same algorithm with each factor's first nonzero coefficient positive: a sign moved
    from row r of W_a or W_b to column r of W_c changes neither exactness nor cost."""
    w_a, w_b, w_c = algorithm.W_a.copy(), algorithm.W_b.copy(), algorithm.W_c.copy()
    for factor in (w_a, w_b):
        for r, row in enumerate(factor):
            nonzero = np.flatnonzero(row)
            if len(nonzero) and row[nonzero[0]] < 0:
                factor[r] *= -1
                w_c[:, r] *= -1
    return Algorithm(algorithm.m, algorithm.k, algorithm.n, w_a, w_b, w_c)


def multiply(algorithm, a, b):
    """A·B computed by the algorithm (its R multiplications); a and b are numpy matrices."""
    alg = algorithm
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != (alg.m, alg.k) or b.shape != (alg.k, alg.n):
        raise ValueError('expected a %dx%d and a %dx%d matrix, got %s and %s'
                         % (alg.m, alg.k, alg.k, alg.n, a.shape, b.shape))
    products = (alg.W_a @ a.reshape(-1)) * (alg.W_b @ b.reshape(-1))
    return (alg.W_c @ products).reshape(alg.m, alg.n)


def describe(algorithm):
    """The algorithm as readable formulas, M1 = (A11 + A22)(B11 + B22) ..., C11 = M1 + ..."""
    alg = algorithm

    def combination(coefficients, names):
        terms = []
        for c, name in zip(coefficients, names):
            if c:
                sign = '-' if c < 0 else '+'
                size = '' if abs(c) == 1 else '%d*' % abs(c)
                terms.append((sign, size + name))
        if not terms:
            return '0'
        text = ('-' if terms[0][0] == '-' else '') + terms[0][1]
        return text + ''.join(' %s %s' % term for term in terms[1:])

    def names(letter, rows, cols):
        return ['%s%d%d' % (letter, i + 1, j + 1) for i in range(rows) for j in range(cols)]

    def factor(coefficients, letter, rows, cols):
        text = combination(coefficients, names(letter, rows, cols))
        return '(%s)' % text if ' ' in text or text.startswith('-') else text

    lines = ['M%d = %s %s' % (r + 1, factor(alg.W_a[r], 'A', alg.m, alg.k),
                              factor(alg.W_b[r], 'B', alg.k, alg.n)) for r in range(alg.rank)]
    products = ['M%d' % (r + 1) for r in range(alg.rank)]
    lines += ['%s = %s' % (name, combination(alg.W_c[row], products))
              for row, name in enumerate(names('C', alg.m, alg.n))]
    return lines


def load_algorithm(path):
    """Read an algorithm JSON file; ValueError (with the file name) if it is malformed."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError('%s is not valid JSON: %s' % (path, error)) from None
    try:
        return Algorithm.from_dict(data)
    except ValueError as error:
        raise ValueError('%s: %s' % (path, error)) from None


def save_algorithm(algorithm, path):
    """Write {"m", "k", "n", "rank", "W_a", "W_b", "W_c"}, one matrix row per line."""
    data = algorithm.to_dict()

    def matrix(key):
        rows = ',\n'.join('    ' + json.dumps(row) for row in data[key])
        return '  "%s": [\n%s\n  ]' % (key, rows)

    sizes = ', '.join('"%s": %d' % (key, data[key]) for key in ('m', 'k', 'n', 'rank'))
    body = ',\n'.join(['  ' + sizes] + [matrix(key) for key in ('W_a', 'W_b', 'W_c')])
    Path(path).write_text('{\n%s\n}\n' % body)


# ---------------------------------------------------------------------------------------------
# The learnable model.

class BilinearSPN(gluon.HybridBlock):
    """The SPN with both inputs data-dependent (the original's SumProdPlain, SPEC 1.2):
    out = W_c [(W_b b) ⊙ (W_a a)] for a batch of vec(A) (batch x MK) and vec(B) (batch x KN).

    Every weight has a leading `population` axis: the block holds that many independent
    algorithms and returns (population x batch x MN). In Phase.TERNARY all three matrices are
    ternarised (here A is data, so W_a is a matrix like W_b, not the ã vector of a layer), each
    per candidate and per matrix (quantizer axis (1, 2)); Phase.FULL uses them as they are.
    """

    def __init__(self, m, k, n, rank, population=1, quantizer='threshold', phase=Phase.FULL,
                 init_std=0.5, **kwargs):
        super().__init__(**kwargs)
        check_sizes(m, k, n, rank)
        if not isinstance(population, int) or population < 1:
            raise ValueError('population must be an integer >= 1, not %r' % (population,))
        self.m, self.k, self.n, self.rank, self.population = m, k, n, rank, population
        self._quantizer = get_quantizer(quantizer)
        self.phase = phase
        init = mx.init.Normal(init_std)
        with self.name_scope():
            self.wa = self.params.get('wa', shape=(population, rank, m * k), init=init)
            self.wb = self.params.get('wb', shape=(population, rank, k * n), init=init)
            self.wc = self.params.get('wc', shape=(population, m * n, rank), init=init)

    @property
    def phase(self):
        return self._phase

    @phase.setter
    def phase(self, value):
        phase = Phase.parse(value)
        if phase not in (Phase.FULL, Phase.TERNARY):
            raise ValueError('BilinearSPN supports phases FULL and TERNARY, not %s' % phase.name)
        self._phase = phase
        self._clear_cached_op()  # the graph depends on the phase

    def hybrid_forward(self, F, a, b, wa, wb, wc):
        if self._phase == Phase.TERNARY:
            wa, wb, wc = (fake_quantize(F, w, self._quantizer, axis=(1, 2)) for w in (wa, wb, wc))
        hidden = F.dot(wa, a, transpose_b=True) * F.dot(wb, b, transpose_b=True)  # P x R x batch
        return F.batch_dot(hidden, wc, transpose_a=True, transpose_b=True)      # P x batch x MN


class _SearchObjective(gluon.HybridBlock):
    """Σ over candidates of ||SPN(a, b) - vec(AB)||² / norm  +  λ Σ (w - q(w))², one scalar.

    With Gaussian data and norm = batch size this is an unbiased estimate of the squared
    Brent residual ||T̂ - T||²; with all pairs of unit matrices (norm 1) it equals it. λ is an
    input so the annealing schedule does not rebuild the graph.
    """

    def __init__(self, spn, norm, **kwargs):
        super().__init__(**kwargs)
        self.norm = float(norm)
        with self.name_scope():
            self.spn = spn
        # The same Parameters, registered here too so the penalty sees them inside one graph.
        self.wa, self.wb, self.wc = spn.wa, spn.wb, spn.wc

    def hybrid_forward(self, F, a, b, pull, wa, wb, wc):
        m, k, n = self.spn.m, self.spn.k, self.spn.n
        target = F.reshape(F.batch_dot(F.reshape(a, (-1, m, k)), F.reshape(b, (-1, k, n))),
                           (1, -1, m * n))
        error = F.sum(F.square(F.broadcast_sub(self.spn(a, b), target))) / self.norm
        distance = 0
        for w in (wa, wb, wc):
            levels, _ = threshold(F, w)
            distance = distance + F.sum(F.square(w - F.BlockGrad(levels)))
        return error + F.broadcast_mul(pull, distance)


# ---------------------------------------------------------------------------------------------
# The search.

@dataclass
class SearchConfig:
    """Hyperparameters of one restart (measured on 2x2x2 and 2x2x3, see bench/matmul_success.py).

    population     independent candidates trained together
    fp_steps       steps of the full-precision phase
    anneal_steps   steps over which λ grows (quadratically) from 0 to `pull`
    ternary_steps  steps with ternarised forward pass (straight-through), λ = `pull`
    lr             Adam learning rate (constant; its noise helps reach ternary points)
    batch_size     Gaussian matrix pairs per step
    data           'gaussian' (random A, B) or 'basis' (all pairs of unit matrices: exact loss)
    pull           final weight λ of the pull towards {-1, 0, 1}
    init_std       standard deviation of the Gaussian initial weights
    quantizer      quantizer of the ternary phase ('threshold' keeps the scale at exactly 1)
    check_every    steps between exact checks (each is a host sync)
    stop_early     stop at the first exact candidate; False runs every step of each restart and
                   judges the candidates at the end (to measure how many single runs succeed)
    """
    population: int = 64
    fp_steps: int = 3000
    anneal_steps: int = 4000
    ternary_steps: int = 1000
    lr: float = 0.03
    batch_size: int = 16
    data: str = 'gaussian'
    pull: float = 0.3
    init_std: float = 0.5
    quantizer: str = 'threshold'
    check_every: int = 100
    stop_early: bool = True

    def __post_init__(self):
        for name in ('population', 'batch_size', 'check_every'):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError('%s must be an integer >= 1, not %r' % (name, getattr(self, name)))
        for name in ('fp_steps', 'anneal_steps', 'ternary_steps'):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError('%s must be an integer >= 0, not %r' % (name, getattr(self, name)))
        if self.anneal_steps + self.ternary_steps < 1:
            raise ValueError('anneal_steps + ternary_steps must be >= 1: the exact checks run '
                             'only in those phases')
        for name in ('lr', 'init_std'):
            if not getattr(self, name) > 0:
                raise ValueError('%s must be positive, not %r' % (name, getattr(self, name)))
        if not self.pull >= 0:
            raise ValueError('pull must be >= 0, not %r' % (self.pull,))
        if self.data not in ('gaussian', 'basis'):
            raise ValueError("data must be 'gaussian' or 'basis', not %r" % (self.data,))
        get_quantizer(self.quantizer)

    @property
    def steps(self):
        return self.fp_steps + self.anneal_steps + self.ternary_steps


@dataclass
class SearchResult:
    """algorithm is None when no exact algorithm was found; best_residual is then the smallest
    squared Brent residual Σ(T̂ - T)² over all rounded candidates checked (0 on success).
    exact_candidates counts the exact candidates at the check that ended the search."""
    m: int
    k: int
    n: int
    rank: int
    algorithm: object
    best_residual: int
    restarts: int
    seconds: float
    exact_candidates: int = 0  # of the population, at the check that ended the search

    @property
    def found(self):
        return self.algorithm is not None


def _restart_seed(seed, restart):
    return int(np.random.SeedSequence([seed, restart]).generate_state(1)[0] % (2 ** 31))


def _basis_pairs(m, k, n):
    """All (e_x, e_y): the batch on which the squared error equals the Brent residual."""
    a = np.repeat(np.eye(m * k, dtype=np.float32), k * n, axis=0)
    b = np.tile(np.eye(k * n, dtype=np.float32), (m * k, 1))
    return mx.nd.array(a), mx.nd.array(b)


def _rounded_candidates(spn):
    """Each candidate's matrices rounded to {-1, 0, 1} (scale 1) by the library quantizers:
    the fixed threshold, plus the ternary-phase quantizer's levels when it is another one."""
    snaps = [[threshold(mx.nd, p.data())[0] for p in (spn.wa, spn.wb, spn.wc)]]
    if spn._quantizer is not threshold:
        snaps.append([spn._quantizer(mx.nd, p.data(), (1, 2))[0] for p in (spn.wa, spn.wb, spn.wc)])
    return [[w.asnumpy().astype(np.int64) for w in snap] for snap in snaps]  # sync point


def _check_candidates(m, k, n, snaps, tensor):
    """(best exact Algorithm or None, smallest residual, number of exact candidates) over the
    rounded candidates; a candidate counts once even if several roundings of it are exact."""
    best_exact, best_additions, best_residual = None, None, None
    exact_members = set()
    for w_a, w_b, w_c in snaps:
        t_hat = np.einsum('prx,pry,pzr->pxyz', w_a, w_b, w_c)
        residuals = np.sum((t_hat - tensor) ** 2, axis=(1, 2, 3))
        low = int(residuals.min())
        best_residual = low if best_residual is None else min(best_residual, low)
        for p in np.flatnonzero(residuals == 0):
            exact_members.add(int(p))
            algorithm = canonical_signs(Algorithm(m, k, n, w_a[p], w_b[p], w_c[p]))
            additions = sum(count_additions(algorithm).values())
            if best_exact is None or additions < best_additions:
                best_exact, best_additions = algorithm, additions
    return best_exact, best_residual, len(exact_members)


def learn(m, k, n, rank, seed=0, restarts=DEFAULT_RESTARTS, config=None, time_limit=None,
          log=None, ctx=None):
    """Search for an exact ternary algorithm of the given rank; returns a SearchResult.

    Each restart trains a fresh population (seeded from (seed, restart)) through the three
    phases and stops at the first exact rounded candidate; the fewest additions win among
    candidates found exact at the same check. `time_limit` (seconds, whole search) stops early
    with algorithm None. `log` receives progress lines. Seeds MXNet's global RNG.
    """
    check_sizes(m, k, n, rank)
    if not isinstance(restarts, int) or restarts < 1:
        raise ValueError('restarts must be an integer >= 1, not %r' % (restarts,))
    config = config or SearchConfig()
    ctx = ctx or mx.cpu()
    log = log or (lambda line: None)
    tensor = matmul_tensor(m, k, n)
    start = time.perf_counter()
    best_residual = None
    for restart in range(restarts):
        found, residual, steps, exact = _run_restart(m, k, n, rank, _restart_seed(seed, restart),
                                                     config, tensor, ctx, start, time_limit)
        best_residual = residual if best_residual is None else min(best_residual, residual)
        elapsed = time.perf_counter() - start
        if found is not None:
            log('restart %d/%d: exact rank-%d algorithm after %d steps (%d of %d candidates '
                'exact), %d additions (%.1f s)'
                % (restart + 1, restarts, rank, steps, exact, config.population,
                   sum(count_additions(found).values()), elapsed))
            return SearchResult(m, k, n, rank, found, 0, restart + 1, elapsed, exact)
        log('restart %d/%d: no exact algorithm in %d steps, best residual %d (%.1f s)'
            % (restart + 1, restarts, steps, residual, elapsed))
        if time_limit is not None and elapsed >= time_limit:
            log('time limit of %.0f s reached' % time_limit)
            return SearchResult(m, k, n, rank, None, best_residual, restart + 1, elapsed, 0)
    return SearchResult(m, k, n, rank, None, best_residual, restarts,
                        time.perf_counter() - start, 0)


def _run_restart(m, k, n, rank, seed, config, tensor, ctx, start, time_limit):
    """One population through the three phases:
    (exact Algorithm or None, best residual, steps run, exact candidates at the last check)."""
    mx.random.seed(seed)
    spn = BilinearSPN(m, k, n, rank, population=config.population, quantizer=config.quantizer,
                      init_std=config.init_std)
    spn.initialize(ctx=ctx)
    gaussian = config.data == 'gaussian'
    objective = _SearchObjective(spn, norm=config.batch_size if gaussian else 1)
    objective.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(spn.collect_params(), 'adam', {'learning_rate': config.lr})
    if not gaussian:
        a, b = (x.as_in_context(ctx) for x in _basis_pairs(m, k, n))
    pull = mx.nd.zeros((1,), ctx=ctx)
    best_residual, last_check = None, None
    for step in range(config.steps):
        if step == config.fp_steps + config.anneal_steps:
            spn.phase = Phase.TERNARY
            objective._clear_cached_op()
        if config.fp_steps <= step < config.fp_steps + config.anneal_steps:
            progress = (step - config.fp_steps + 1) / config.anneal_steps
            pull[:] = config.pull * progress * progress
        elif step == config.fp_steps + config.anneal_steps:
            pull[:] = config.pull
        if gaussian:
            a = mx.nd.random.normal(shape=(config.batch_size, m * k), ctx=ctx)
            b = mx.nd.random.normal(shape=(config.batch_size, k * n), ctx=ctx)
        with autograd.record():
            loss = objective(a, b, pull)
        loss.backward()
        trainer.step(1)
        done = step + 1
        if done % config.check_every and done != config.steps:
            continue
        if done > config.fp_steps:
            last_check = done, _check_candidates(m, k, n, _rounded_candidates(spn), tensor)
            found, residual, exact = last_check[1]
            best_residual = residual if best_residual is None else min(best_residual, residual)
            if found is not None and config.stop_early:
                return found, 0, done, exact
        else:
            loss.wait_to_read()  # sync point: keeps the clock honest for the time limit
        if time_limit is not None and time.perf_counter() - start >= time_limit:
            break
    if last_check is None or last_check[0] != done:  # judge the final state too
        last_check = done, _check_candidates(m, k, n, _rounded_candidates(spn), tensor)
        residual = last_check[1][1]
        best_residual = residual if best_residual is None else min(best_residual, residual)
    found, _, exact = last_check[1]
    if found is not None:
        return found, 0, done, exact
    return None, best_residual, done, 0


# ---------------------------------------------------------------------------------------------
# Command line.

def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not an integer' % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError('must be >= 1, got %d' % value)
    return value


def _nonnegative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not an integer' % text) from None
    if value < 0:
        raise argparse.ArgumentTypeError('must be >= 0, got %d' % value)
    return value


def parse_args(argv=None):
    defaults = SearchConfig()
    parser = argparse.ArgumentParser(
        prog='python -m strassen_gluon.matmul',
        description='Learn an exact {-1,0,1} algorithm multiplying an MxK by a KxN matrix with '
                    'RANK multiplications, verified in integer arithmetic; or verify one '
                    '(--verify). Exit code: 0 found/exact, 1 not found/not exact, 2 bad input.')
    parser.add_argument('--m', type=_positive_int, help='rows of A')
    parser.add_argument('--k', type=_positive_int, help='columns of A = rows of B')
    parser.add_argument('--n', type=_positive_int, help='columns of B')
    parser.add_argument('--rank', type=_positive_int, help='number of multiplications R')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the search; restart i uses a seed derived from (SEED, i)')
    parser.add_argument('--restarts', type=_positive_int, default=DEFAULT_RESTARTS,
                        help='fresh populations to try (default %(default)s)')
    parser.add_argument('--time-limit', type=float, default=None, metavar='SECONDS',
                        help='give up after this many seconds in total')
    parser.add_argument('--json', metavar='FILE', help='write the algorithm found to FILE')
    parser.add_argument('--verify', metavar='FILE',
                        help='check and evaluate the algorithm in FILE instead of learning')
    parser.add_argument('--quiet', action='store_true', help='print only the final result')
    group = parser.add_argument_group('search hyperparameters (defaults in brackets)')
    group.add_argument('--population', type=_positive_int, default=defaults.population,
                       help='candidates trained at once per restart [%(default)s]')
    group.add_argument('--fp-steps', type=_nonnegative_int, default=defaults.fp_steps,
                       help='full-precision steps [%(default)s]')
    group.add_argument('--anneal-steps', type=_nonnegative_int, default=defaults.anneal_steps,
                       help='steps while the pull towards {-1,0,1} grows [%(default)s]')
    group.add_argument('--ternary-steps', type=_nonnegative_int, default=defaults.ternary_steps,
                       help='steps with a ternarised forward pass [%(default)s]')
    group.add_argument('--lr', type=float, default=defaults.lr,
                       help='Adam learning rate [%(default)s]')
    group.add_argument('--batch-size', type=_positive_int, default=defaults.batch_size,
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
    if args.time_limit is not None and not args.time_limit > 0:
        parser.error('--time-limit must be positive')
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


def main(argv=None, out=None):
    """Run the command line; returns the exit code (0 found/exact, 1 not, 2 bad input)."""
    out = out or sys.stdout
    args = parse_args(argv)
    if args.verify is not None:
        try:
            algorithm = load_algorithm(args.verify)
        except (OSError, ValueError) as error:
            print('error: %s' % error, file=sys.stderr)
            return 2
        report = evaluate(algorithm)
        print('%s:' % args.verify, file=out)
        _print_evaluation(report, out)
        return 0 if report['exact'] else 1

    log = None if args.quiet else (lambda line: print(line, file=out, flush=True))
    if log:
        c = args.config
        log('searching %dx%dx%d rank %d: seed %d, %d restart(s) x population %d, steps %d+%d+%d'
            % (args.m, args.k, args.n, args.rank, args.seed, args.restarts, c.population,
               c.fp_steps, c.anneal_steps, c.ternary_steps))
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
    _print_evaluation(evaluate(result.algorithm), out)
    for line in describe(result.algorithm):
        print('  ' + line, file=out)
    if args.json:
        save_algorithm(result.algorithm, args.json)
        print('wrote %s' % args.json, file=out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
