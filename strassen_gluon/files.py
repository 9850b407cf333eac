"""Output files of the commands: checked before the work starts, written atomically.

A command that computes for minutes and then writes a file checks the file's path first
(:func:`require_writable`), so that a typo in the path fails at once instead of losing the
result; :func:`atomic_path` and :func:`write_text_atomic` make readers see the old file or the
new one, never half.
"""
import contextlib
import os
import tempfile

from .errors import UsageError


def require_writable(path, option):
    """Raise UsageError, one line naming `option` and `path`, unless a file can be written
    there: its folder exists and accepts a new file, and the path is not a folder. Leaves
    nothing behind (the probe file is removed)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError('%s %s: that is a folder; give a file name' % (option, path))
    if not os.path.isdir(folder):
        raise UsageError('%s %s: the folder %s does not exist' % (option, path, folder))
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix='.write-probe-'):
            pass
    except OSError as err:
        raise UsageError('%s %s: cannot write in %s (%s)'
                         % (option, path, folder, err.strerror or err)) from None
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UsageError('%s %s: the file exists and is read-only' % (option, path))


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
