"""The paper's method: learn an exact algorithm with a bilinear SPN.

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
"""
import math
import time
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..config import Phase
from ..gluon_compat import clear_cached_graph
from ..quant import fake_quantize, get_quantizer, threshold
from .algebra import Algorithm, canonical_signs, check_sizes, count_additions, matmul_tensor

DEFAULT_RESTARTS = 3


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
        clear_cached_graph(self)  # the graph depends on the phase

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
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError('%s must be positive and finite, not %r'
                                 % (name, getattr(self, name)))
        if not 0 <= self.pull < math.inf:
            raise ValueError('pull must be >= 0 and finite, not %r' % (self.pull,))
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
            clear_cached_graph(objective)
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
