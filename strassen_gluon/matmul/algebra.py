"""Bilinear matrix-multiplication algorithms, their exact integer check and their cost.

An algorithm of rank R for multiplying an M x K matrix A by a K x N matrix B is three integer
matrices W_a (R x MK), W_b (R x KN) and W_c (MN x R) such that, for every A and B,

    vec(AB) = W_c [(W_b vec B) ⊙ (W_a vec A)],

with vec taken row-major (numpy's order: vec(A)[i*K + j] = A[i, j]). It costs R multiplications.
The identity holds for all A, B exactly when the Brent equations hold:

    sum_r W_a[r, i*K+j] W_b[r, j'*N+l] W_c[i'*N+l', r] = δ(i,i') δ(j,j') δ(l,l')

for all indices; :func:`brent_residual` checks them in integer arithmetic, so "exact" here is a
proof, not a tolerance. Strassen's algorithm is the 2x2x2 case with R = 7 (file
``algorithms/strassen_2x2x2.json``).

An :class:`Algorithm` may be inexact (``--verify`` reports how far off one is), but the
functions that compute products with one, :func:`multiply` and :func:`apply`, check the Brent
equations first and refuse an inexact one (:func:`require_exact`). Coefficients follow one rule
whatever their source (JSON file, Python lists, numpy arrays): numbers with an integer value,
so 1.0 is the coefficient 1; 0.5, booleans and NaN are refused.

Additions are counted naively (no reuse of common subexpressions): a row of W_a or W_b with
z > 0 nonzeros costs z - 1 additions (forming one factor), and a row of W_c with z > 0 nonzeros
costs z - 1 additions (forming one output entry). Strassen's algorithm counts 18 this way; the
naive rank-MKN algorithm counts MN(K - 1).
"""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import write_text_atomic
from .cse import cse_additions

ALGORITHMS_DIR = Path(__file__).resolve().parent.parent / 'algorithms'


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


def _integer_entry(entry):
    """True for a number with an integer value: 1, np.int8(1), 1.0 and np.float32(-1.0) alike;
    False for 0.5, booleans, NaN, infinities, strings and floats too large to be exact."""
    if isinstance(entry, (bool, np.bool_)):
        return False
    if isinstance(entry, (int, np.integer)):
        return True
    if isinstance(entry, (float, np.floating)):
        return bool(np.isfinite(entry)) and float(entry).is_integer() and abs(entry) < 2 ** 53
    return False


def _integer_matrix(value, name):
    """`value` (nested lists as read from JSON, or a numpy array) as an int64 matrix.

    One rule for every source: an entry is a number with an integer value, so 1 and 1.0 are the
    same coefficient (JSON does not tell them apart); 0.5, true/false and NaN are refused.
    """
    if isinstance(value, np.ndarray):
        if value.ndim != 2:
            raise ValueError('%s must be a matrix, got %d dimensions' % (name, value.ndim))
        rows = value.tolist()
    else:
        rows = value if isinstance(value, (list, tuple)) else None
        if not rows or not all(isinstance(row, (list, tuple)) for row in rows):
            raise ValueError('%s must be a non-empty list of rows (lists of integers)' % name)
        if len({len(row) for row in rows}) != 1:
            raise ValueError('%s has rows of different lengths' % name)
    for row in rows:
        for entry in row:
            if not _integer_entry(entry):
                raise ValueError('%s must hold integers (1.0 counts as 1), found %r'
                                 % (name, entry))
    if not rows or not rows[0]:
        raise ValueError('%s is empty' % name)
    return np.array(rows, dtype=np.int64)


def brent_residual(algorithm):
    """T̂ - T as an int64 tensor (MK x KN x MN); zero everywhere iff the algorithm is exact."""
    a = algorithm
    t_hat = np.einsum('rx,ry,zr->xyz', a.W_a, a.W_b, a.W_c)
    return t_hat - matmul_tensor(a.m, a.k, a.n)


def is_exact(algorithm):
    """True iff every Brent equation holds (integer arithmetic, no tolerance)."""
    return not brent_residual(algorithm).any()


def require_exact(algorithm):
    """Raise ValueError unless every Brent equation holds.

    :func:`multiply` and :func:`apply` call it on every call (the arrays of an Algorithm can be
    changed in place, so an earlier check proves nothing), so an algorithm with a wrong
    coefficient never returns a product; it costs one R x MK x KN x MN integer contraction.
    """
    residual = brent_residual(algorithm)
    if residual.any():
        raise ValueError('the %dx%dx%d algorithm of rank %d is not exact: %d of %d Brent '
                         'equations are violated (matmul.evaluate reports them); refusing to '
                         'compute with it' % (algorithm.m, algorithm.k, algorithm.n,
                                              algorithm.rank, np.count_nonzero(residual),
                                              residual.size))


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
    after_cse = cse_additions(algorithm.W_a, algorithm.W_b, algorithm.W_c)
    return {'m': algorithm.m, 'k': algorithm.k, 'n': algorithm.n, 'rank': algorithm.rank,
            'exact': not residual.any(), 'ternary': algorithm.ternary,
            'equations': int(residual.size), 'violated': int(np.count_nonzero(residual)),
            'residual': int(np.sum(residual ** 2)),
            'additions': sum(additions.values()), 'additions_by_matrix': additions,
            'additions_cse': sum(after_cse.values()), 'additions_cse_by_matrix': after_cse,
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
    """A·B computed by the algorithm (its R multiplications); a and b are numpy matrices.
    ValueError for an algorithm that is not exact (:func:`require_exact`)."""
    alg = algorithm
    require_exact(alg)
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
    """Write {"m", "k", "n", "rank", "additions", "additions_cse", "W_a", "W_b", "W_c"}, one
    matrix row per line."""
    data = algorithm.to_dict()

    def matrix(key):
        rows = ',\n'.join('    ' + json.dumps(row) for row in data[key])
        return '  "%s": [\n%s\n  ]' % (key, rows)

    sizes = ', '.join('"%s": %d' % (key, data[key]) for key in ('m', 'k', 'n', 'rank'))
    # The costs are for readers; load_algorithm ignores them and recomputes.
    report = evaluate(algorithm)
    costs = '"additions": %d, "additions_cse": %d' % (report['additions'], report['additions_cse'])
    body = ',\n'.join(['  ' + sizes, '  ' + costs] + [matrix(key) for key in ('W_a', 'W_b', 'W_c')])
    write_text_atomic(path, '{\n%s\n}\n' % body)




def apply(algorithm, a, b):
    """A·B for matrices whose sizes are multiples of the algorithm's: A is cut into M x K blocks
    and B into K x N blocks, the R block products are formed by the algorithm and each is
    computed by :func:`apply` again while its blocks still divide (otherwise with ``@``).
    Exact for integer matrices (no rounding anywhere). ValueError for an algorithm that is not
    exact (:func:`require_exact`)."""
    require_exact(algorithm)
    return _apply(algorithm, np.asarray(a), np.asarray(b))[0]


def apply_multiplications(algorithm, p, q, s):
    """Scalar multiplications :func:`apply` spends on a p x q by q x s product."""
    alg = algorithm
    if p % alg.m or q % alg.k or s % alg.n or (p, q, s) == (1, 1, 1):
        return p * q * s
    return alg.rank * apply_multiplications(alg, p // alg.m, q // alg.k, s // alg.n)


def _apply(alg, a, b):
    (p, q), (q2, s) = a.shape, b.shape
    if q != q2:
        raise ValueError('cannot multiply %s by %s' % (a.shape, b.shape))
    if p % alg.m or q % alg.k or s % alg.n or (p, q, s) == (1, 1, 1):
        return a @ b, p * q * s
    bp, bq, bs = p // alg.m, q // alg.k, s // alg.n
    a_blocks = a.reshape(alg.m, bp, alg.k, bq).transpose(0, 2, 1, 3).reshape(alg.m * alg.k, bp, bq)
    b_blocks = b.reshape(alg.k, bq, alg.n, bs).transpose(0, 2, 1, 3).reshape(alg.k * alg.n, bq, bs)
    left = np.tensordot(alg.W_a, a_blocks, axes=1)   # R x bp x bq
    right = np.tensordot(alg.W_b, b_blocks, axes=1)  # R x bq x bs
    products, count = [], 0
    for r in range(alg.rank):
        product, used = _apply(alg, left[r], right[r])
        products.append(product)
        count += used
    c_blocks = np.tensordot(alg.W_c, np.stack(products), axes=1)  # MN x bp x bs
    c = c_blocks.reshape(alg.m, alg.n, bp, bs).transpose(0, 2, 1, 3).reshape(p, s)
    return c, count
