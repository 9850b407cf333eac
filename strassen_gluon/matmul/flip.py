"""Flip-graph random walk (the idea of Kauers and Moosbauer, 2022), over integers in {-1, 0, 1}.

An algorithm of rank R is a sum of R rank-one tensors a_r ⊗ b_r ⊗ c_r equal to the
matrix-multiplication tensor T (a_r = row r of W_a, b_r = row r of W_b, c_r = column r of W_c).
Three local moves keep the sum equal to T, so every scheme on the walk is exact:

flip       two terms sharing a factor up to sign, a ⊗ b ⊗ c + a ⊗ b' ⊗ c' (after moving the sign
           into b'), are rewritten as a ⊗ (b + εb') ⊗ c + a ⊗ b' ⊗ (c' - εc), ε = ±1
           (p qᵀ + t wᵀ = (p + εt) qᵀ + t (w - εq)ᵀ); any slot may play the role of a.
reduction  two terms sharing two factors up to sign, a ⊗ b ⊗ c + a ⊗ b ⊗ c'', merge into
           a ⊗ b ⊗ (c + c''); and a term with a zero factor is dropped: the rank falls.
plus       when the walk is stuck, a ⊗ b ⊗ c + a' ⊗ b' ⊗ c' =
           (a - a') ⊗ b ⊗ c + a' ⊗ (b - b') ⊗ c + a' ⊗ b' ⊗ (c + c') raises the rank by one,
           which opens new flips.

Kauers and Moosbauer walk over GF(2) and lift; here every move is rejected if it would put a
coefficient outside {-1, 0, 1}, so no lifting is needed and each scheme is already a ternary
integer algorithm (still checked exactly by :func:`is_exact` before it is returned).

The walk starts from the schoolbook algorithm (rank MKN) or any given exact algorithm, takes
random flips and every reduction they enable, and when no reduction came for `plateau` flips it
restarts from one of the best schemes seen so far with a plus transition. The vectors are short
tuples of Python ints: for these sizes that is faster than numpy calls per move.
"""
import random
import time
from dataclasses import dataclass

import numpy as np

from .algebra import Algorithm, canonical_signs, check_sizes, count_additions, is_exact, \
    naive_algorithm

DEFAULT_PLATEAU = 200000
POOL_SIZE = 32


def _canonical(vector):
    """(vector with first nonzero positive, sign that restores it)."""
    for value in vector:
        if value:
            if value > 0:
                return vector, 1
            return tuple(-v for v in vector), -1
    return vector, 1


def _combine(p, t, e):
    """p + e t, or None when a coefficient would leave {-1, 0, 1}."""
    out = tuple(x + e * y for x, y in zip(p, t))
    for value in out:
        if value > 1 or value < -1:
            return None
    return out


def _is_zero(vector):
    return not any(vector)


class _Scheme:
    """A multiset of rank-one terms with, per slot, an index from canonical factor to terms."""

    def __init__(self, terms, rng):
        self.rng = rng
        self.factors = {}
        self.keys = {}
        self.index = [{}, {}, {}]
        self.ids = []
        self.position = {}
        self.next_id = 0
        for term in terms:
            self.add(term)

    @property
    def rank(self):
        return len(self.ids)

    def add(self, term):
        if any(_is_zero(f) for f in term):
            return None
        tid = self.next_id
        self.next_id += 1
        self.factors[tid] = list(term)
        self.keys[tid] = [None, None, None]
        for slot in range(3):
            self._index_slot(tid, slot)
        self.position[tid] = len(self.ids)
        self.ids.append(tid)
        return tid

    def _index_slot(self, tid, slot):
        key = _canonical(self.factors[tid][slot])
        self.keys[tid][slot] = key
        self.index[slot].setdefault(key[0], set()).add(tid)

    def _unindex_slot(self, tid, slot):
        key = self.keys[tid][slot][0]
        group = self.index[slot][key]
        group.discard(tid)
        if not group:
            del self.index[slot][key]

    def set_factor(self, tid, slot, vector):
        """Replace one factor; drops the term (returns False) if the factor is zero."""
        if _is_zero(vector):
            self.remove(tid)
            return False
        self._unindex_slot(tid, slot)
        self.factors[tid][slot] = vector
        self._index_slot(tid, slot)
        return True

    def remove(self, tid):
        for slot in range(3):
            self._unindex_slot(tid, slot)
        del self.factors[tid], self.keys[tid]
        last = self.ids.pop()
        if last != tid:
            where = self.position[tid]
            self.ids[where] = last
            self.position[last] = where
        del self.position[tid]

    def terms(self):
        return [tuple(self.factors[tid]) for tid in self.ids]

    # -- moves -------------------------------------------------------------------------------

    def try_flip(self):
        """One random flip attempt; True if the scheme changed."""
        rng = self.rng
        r = self.ids[rng.randrange(len(self.ids))]
        x = rng.randrange(3)
        group = self.index[x][self.keys[r][x][0]]
        if len(group) < 2:
            return False
        s = rng.choice(tuple(group))
        if s == r:
            return False
        y, z = (1, 2) if x == 0 else (0, 2) if x == 1 else (0, 1)
        if rng.random() < 0.5:
            y, z = z, y
        sigma = self.keys[s][x][1] * self.keys[r][x][1]  # f_x[s] = sigma f_x[r]
        e = 1 if rng.random() < 0.5 else -1
        fr, fs = self.factors[r], self.factors[s]
        new_y = _combine(fr[y], fs[y], e * sigma)
        if new_y is None:
            return False
        new_z = _combine(fs[z], fr[z], -e)
        if new_z is None:
            return False
        alive_r = self.set_factor(r, y, new_y)
        alive_s = self.set_factor(s, z, new_z)
        for tid in ((r,) if alive_r else ()) + ((s,) if alive_s else ()):
            if tid in self.factors:
                self.reduce(tid)
        return True

    def reduce(self, tid):
        """Merge `tid` with a term sharing two of its factors up to sign, if one exists and the
        merged factor stays in {-1, 0, 1}; repeats while merges happen."""
        while tid in self.factors:
            merged = False
            for p, q, o in ((0, 1, 2), (0, 2, 1), (1, 2, 0)):
                kp, kq = self.keys[tid][p], self.keys[tid][q]
                group_p, group_q = self.index[p].get(kp[0], ()), self.index[q].get(kq[0], ())
                if len(group_p) < 2 or len(group_q) < 2:
                    continue
                for u in group_p & group_q:
                    if u == tid:
                        continue
                    sign = (self.keys[u][p][1] * kp[1]) * (self.keys[u][q][1] * kq[1])
                    new_o = _combine(self.factors[tid][o], self.factors[u][o], sign)
                    if new_o is None:
                        continue
                    self.remove(u)
                    self.set_factor(tid, o, new_o)
                    merged = True
                    break
                if merged:
                    break
            if not merged:
                return

    def try_plus(self):
        """One random plus transition (rank + 1); True if it applied."""
        rng = self.rng
        if len(self.ids) < 2:
            return False
        r, s = rng.sample(self.ids, 2)
        order = [0, 1, 2]
        rng.shuffle(order)
        ia, ib, ic = order
        a, b, c = (self.factors[r][i] for i in order)
        a2, b2, c2 = (self.factors[s][i] for i in order)
        if rng.random() < 0.5:  # the same term written as (-a') ⊗ b' ⊗ (-c')
            a2, c2 = tuple(-v for v in a2), tuple(-v for v in c2)
        first_a = _combine(a, a2, -1)
        middle_b = _combine(b, b2, -1)
        last_c = _combine(c2, c, 1)
        if first_a is None or middle_b is None or last_c is None:
            return False
        new_terms = [(first_a, b, c), (a2, middle_b, c), (a2, b2, last_c)]
        self.remove(r)
        self.remove(s)
        for term in new_terms:
            slots = [None, None, None]
            slots[ia], slots[ib], slots[ic] = term
            self.add(tuple(slots))
        return True


def _terms_of(algorithm):
    return [(tuple(int(v) for v in algorithm.W_a[r]), tuple(int(v) for v in algorithm.W_b[r]),
             tuple(int(v) for v in algorithm.W_c[:, r])) for r in range(algorithm.rank)]


def _algorithm_of(m, k, n, terms):
    w_a = np.array([t[0] for t in terms], dtype=np.int64)
    w_b = np.array([t[1] for t in terms], dtype=np.int64)
    w_c = np.array([t[2] for t in terms], dtype=np.int64).T
    return canonical_signs(Algorithm(m, k, n, w_a, w_b, w_c))


@dataclass
class FlipResult:
    """algorithm: the exact algorithm of the lowest rank reached (never None: the start counts);
    found: whether that rank is <= the target; steps: flip attempts made."""
    m: int
    k: int
    n: int
    rank: int
    algorithm: Algorithm
    found: bool
    steps: int
    seconds: float


def flip_search(m, k, n, rank, seed=0, start=None, time_limit=60.0, max_steps=None,
                plateau=DEFAULT_PLATEAU, log=None):
    """Walk the flip graph from `start` (default: the schoolbook algorithm) until an exact
    algorithm of rank <= `rank` is reached, `time_limit` seconds pass or `max_steps` flip
    attempts are made. Returns a FlipResult with the best algorithm reached; among the schemes
    of the best rank the one with fewest naive additions is kept."""
    check_sizes(m, k, n, rank)
    start = start if start is not None else naive_algorithm(m, k, n)
    if (start.m, start.k, start.n) != (m, k, n) or not is_exact(start):
        raise ValueError('the start must be an exact %dx%dx%d algorithm' % (m, k, n))
    if not start.ternary:
        raise ValueError('the start must have coefficients in {-1, 0, 1}')
    log = log or (lambda line: None)
    rng = random.Random(seed)
    scheme = _Scheme(_terms_of(start), rng)
    best_rank, pool = scheme.rank, [scheme.terms()]
    clock = time.perf_counter()
    steps = since_drop = 0
    while best_rank > rank:
        if max_steps is not None and steps >= max_steps:
            break
        if steps % 2048 == 0 and time_limit is not None \
                and time.perf_counter() - clock >= time_limit:
            break
        steps += 1
        since_drop += 1
        scheme.try_flip()
        if scheme.rank < best_rank:
            best_rank, pool, since_drop = scheme.rank, [scheme.terms()], 0
            log('rank %d after %d flips (%.1f s)' % (best_rank, steps,
                                                     time.perf_counter() - clock))
        elif scheme.rank == best_rank and since_drop % 1000 == 0 and len(pool) < POOL_SIZE:
            pool.append(scheme.terms())
        if since_drop >= plateau:
            # Stuck: restart from a scheme of the best rank, one rank up.
            scheme = _Scheme(rng.choice(pool), rng)
            for _ in range(100):
                if scheme.try_plus():
                    break
            since_drop = 0
    candidates = [_algorithm_of(m, k, n, terms) for terms in pool]
    for algorithm in candidates:
        if not is_exact(algorithm):  # the moves preserve the sum; this guards the code itself
            raise AssertionError('flip search produced an inexact scheme')
    best = min(candidates, key=lambda a: sum(count_additions(a).values()))
    return FlipResult(m, k, n, rank, best, best.rank <= rank, steps, time.perf_counter() - clock)
