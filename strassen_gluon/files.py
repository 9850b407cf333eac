"""Output files of the commands: checked before the work starts, written atomically.

A command that computes for minutes and then writes a file checks the file's path first
(:func:`require_writable`), so that a typo in the path fails at once instead of losing the
result; :func:`atomic_path` and :func:`write_text_atomic` make readers see the old file or the
new one, never half.
"""
import contextlib
import os
import tempfile

from .errors import OutputError


def _nearest_existing(path):
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def require_writable(path, option, folder=False):
    """Raise OutputError (exit 1), one line naming `option` and `path`, unless `path` can be
    written: a file there (its folder must exist), or with `folder` a folder (missing parents
    are made later, so the nearest existing one must accept new entries). Leaves nothing behind
    (the probe file is removed)."""
    path = os.fspath(path)
    target = os.path.abspath(path)
    if not folder and os.path.isdir(target):
        raise OutputError('%s %s: that is a folder; give a file name' % (option, path))
    if folder and os.path.exists(target) and not os.path.isdir(target):
        raise OutputError('%s %s: that is a file, not a folder' % (option, path))
    where = _nearest_existing(target) if folder else os.path.dirname(target)
    if not os.path.isdir(where):
        raise OutputError('%s %s: %s' % (option, path, 'the folder %s does not exist' % where
                                         if not os.path.exists(where)
                                         else '%s is a file, not a folder' % where))
    try:
        with tempfile.NamedTemporaryFile(dir=where, prefix='.write-probe-'):
            pass
    except OSError as err:
        raise OutputError('%s %s: cannot write in %s (%s)'
                          % (option, path, where, err.strerror or err)) from None
    if not folder and os.path.exists(target) and not os.access(target, os.W_OK):
        raise OutputError('%s %s: the file exists and is read-only' % (option, path))


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path in the folder of `path` to write to; renamed over `path` when the block
    ends without an error, removed otherwise (so a failed or interrupted write leaves the old
    file, or none, never half of a new one)."""
    tmp = '%s.tmp-%d' % (path, os.getpid())
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path, text):
    """Write `text` to `path` atomically (:func:`atomic_path`), flushed to disk first."""
    with atomic_path(path) as tmp:
        with open(tmp, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
