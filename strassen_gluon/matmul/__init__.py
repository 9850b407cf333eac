"""Exact fast matrix-multiplication algorithms: find them, verify them exactly, count their cost.

algebra   the Algorithm type, the exact integer Brent check, addition counts, JSON files
spn       the paper's method: a bilinear SPN learned towards {-1, 0, 1} (``learn``)
cli       ``python -m strassen_gluon.matmul``
"""
from .algebra import (ALGORITHMS_DIR, Algorithm, brent_residual, canonical_signs, check_sizes,
                      apply, apply_multiplications, count_additions, describe, evaluate,
                      is_exact, load_algorithm, require_exact,
                      matmul_tensor, multiply, naive_algorithm, rank_lower_bound, save_algorithm)
from .cli import main, parse_args
from .spn import DEFAULT_RESTARTS, BilinearSPN, SearchConfig, SearchResult, learn
