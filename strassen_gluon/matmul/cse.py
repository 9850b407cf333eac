"""Additions after common-subexpression elimination (greedy, pairwise).

Each of W_a, W_b and W_c is a set of linear forms (its rows) over some inputs (vec A, vec B, the
products). The naive count forms each row alone: nonzeros - 1 additions. Here, repeatedly, the
signed pair x_i ± x_j that occurs in the most rows (same relative sign, coefficient ±1) becomes a
new input t = x_i ± x_j, at one addition, and every row holding that pair uses t instead; this
stops when no pair occurs twice. The count is then (new inputs) + Σ (nonzeros - 1) over rows.
Greedy pairing is not optimal (finding the fewest additions is NP-hard), but it is an upper
bound that a real program meets: :func:`evaluate_program` runs it.
"""
from collections import Counter

import numpy as np


def eliminate(forms):
    """Greedy pairwise CSE of the rows of an integer matrix.

    Returns (steps, rows): steps is a list of (i, j, sign) meaning new input
    x_{inputs + step} = x_i + sign * x_j; rows is the int matrix of the forms over the
    inputs followed by the new ones."""
    rows = [dict((int(i), int(c)) for i, c in enumerate(row) if c) for row in np.asarray(forms)]
    width = np.asarray(forms).shape[1]
    steps = []
    while True:
        pairs = Counter()
        for row in rows:
            units = sorted(i for i, c in row.items() if abs(c) == 1)
            for a, i in enumerate(units):
                for j in units[a + 1:]:
                    pairs[(i, j, row[i] * row[j])] += 1
        if not pairs:
            break
        (i, j, sign), count = max(pairs.items(), key=lambda item: (item[1], -item[0][0],
                                                                    -item[0][1]))
        if count < 2:
            break
        new = width + len(steps)
        steps.append((i, j, sign))
        for row in rows:
            if abs(row.get(i, 0)) == 1 and row.get(j, 0) == sign * row[i]:
                row[new] = row.pop(i)
                del row[j]
    matrix = np.zeros((len(rows), width + len(steps)), dtype=np.int64)
    for r, row in enumerate(rows):
        for i, c in row.items():
            matrix[r, i] = c
    return steps, matrix


def additions(steps, rows):
    """Additions of a CSE program: one per step plus nonzeros - 1 per nonzero row."""
    nnz = np.count_nonzero(rows, axis=1)
    return len(steps) + int(np.sum(nnz[nnz > 0] - 1))


def evaluate_program(steps, rows, inputs):
    """The forms' values on `inputs` (a vector), computed as the program does."""
    values = list(np.asarray(inputs).reshape(-1))
    for i, j, sign in steps:
        values.append(values[i] + sign * values[j])
    return np.asarray(rows) @ np.array(values)


def cse_additions(w_a, w_b, w_c):
    """{'W_a', 'W_b', 'W_c'}: additions of each matrix after greedy pairwise CSE."""
    return {name: additions(*eliminate(w)) for name, w in (('W_a', w_a), ('W_b', w_b),
                                                            ('W_c', w_c))}
