"""Machine-readable run logs: one JSON object per line, flushed to disk as it is written."""
import json
import math
import os


def append_jsonl(path, record):
    """Append `record` as one line of JSON and fsync, so a crash loses at most the current line."""
    with open(path, 'a') as f:
        f.write(json.dumps(record, sort_keys=True, default=_jsonable) + '\n')
        f.flush()
        os.fsync(f.fileno())


def rewrite_jsonl(path, records):
    """Replace the file with exactly `records`, atomically (readers see the old or the new)."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        for record in records:
            f.write(json.dumps(record, sort_keys=True, default=_jsonable) + '\n')
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_jsonl(path):
    """All complete records of a JSON-lines file (a torn last line is ignored)."""
    records = []
    if not os.path.isfile(path):
        return records
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except ValueError:
                break
    return records


def _jsonable(value):
    if hasattr(value, 'item'):  # numpy scalars
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    raise TypeError('not JSON serialisable: %r' % (value,))
