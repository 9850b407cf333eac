"""The paper's published values, kept as data in ``published.json`` next to this file.

Each record is one published number: ``table`` (counting, imagenet, ptb, cifar10), the cell's
coordinates (``model``, ``nbr_mul``, ``out_patch``, ``groups``, ``distill``), ``method``
(strassen, fp, twn, ttq, bwn), ``metric`` (mults_reduction_pct, adds_reduction_pct,
size_reduction_pct, top1, top5, test_ppl, val_acc, mults), ``value`` (as the paper prints it:
accuracies in %), ``source`` (which poster or notebook, and where in it) and ``read`` (``text``:
printed as a number; ``digitized``: read off a vector figure's coordinates). Points of a figure
may also carry ``mults``, their x coordinate; the notebook's values carry ``stage``.

A missing ``published.json`` is an empty list: the tables then show this project's values only.
"""
import json
import math
import os

from ..errors import DataError

PUBLISHED_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'published.json')
# The coordinates a record may give; a coordinate it leaves out has this default.
COORD_DEFAULTS = {'model': None, 'method': 'strassen', 'nbr_mul': None, 'out_patch': 1,
                  'groups': 1, 'distill': False}


def load_published(path=None):
    """The list of published records (empty when the file does not exist)."""
    path = path or PUBLISHED_PATH
    if not os.path.isfile(path):
        return []
    try:
        with open(path) as f:
            records = json.load(f)
    except (OSError, ValueError) as err:
        raise DataError('%s cannot be read: %s' % (path, err)) from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError('%s: expected a JSON list of records' % path)
    for r in records:
        missing = [k for k in ('table', 'metric', 'value', 'source', 'read') if k not in r]
        if missing:
            raise DataError('%s: a record lacks %s: %r' % (path, ', '.join(missing), r))
    return records


def same_value(a, b):
    """Coordinates agree: numbers to 1e-9 (0.5 == 1/2), anything else by equality."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def coordinate(record, key):
    """A record's coordinate; missing or null takes its default (a dense model's out_patch
    and groups are 1, its distill False)."""
    value = record.get(key)
    return COORD_DEFAULTS.get(key) if value is None else value


def matching(records, table, coords, metric=None):
    """The records of `table` (and `metric`) whose coordinates equal `coords` on every key of
    `coords` (a key the record lacks takes its default, COORD_DEFAULTS)."""
    return [r for r in records if r['table'] == table
            and (metric is None or r['metric'] == metric)
            and all(same_value(coordinate(r, k), v) for k, v in coords.items())]


def paper_value(records, table, coords, metric):
    """The published record of this cell and metric, or None. A cell with several (the
    CIFAR-10 notebook's value after each stage, in order) gives its last: the final model."""
    found = matching(records, table, coords, metric)
    return found[-1] if found else None


def describe(record):
    """'90.79 (notebook, text)' for a table cell."""
    if record is None:
        return '—'
    value = record['value']
    text = '%.2f' % value if isinstance(value, float) else str(value)
    return '%s (%s)' % (text, 'digitized' if record['read'] == 'digitized' else 'text')
