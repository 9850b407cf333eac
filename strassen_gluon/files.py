"""Output files of the commands: checked before the work starts, written atomically.

A command that computes for minutes and then writes a file checks the file's path first
(:func:`require_writable`), so that a typo in the path fails at once instead of losing the
result; :func:`write_text_atomic` makes readers see the old file or the new one, never half.
"""
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


def write_text_atomic(path, text):
    """Write `text` to `path` through a temporary file in the same folder, flushed to disk,
    then renamed over `path`."""
    tmp = '%s.tmp-%d' % (path, os.getpid())
    try:
        with open(tmp, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
