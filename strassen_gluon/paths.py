"""Output paths checked before any work starts, so that a long computation never ends in a
traceback about a folder it cannot write (and its result is never lost)."""
import os
import tempfile

from .errors import RunFolderError

__all__ = ['check_writable']


def _nearest_existing(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_writable(path, option, folder=False):
    """Raise RunFolderError (exit 1), naming `option` and the path, unless `path` can be
    written: a file (or, with `folder`, a folder) there could be created or replaced. Nothing
    is left behind; missing parent folders are not created."""
    target = os.path.abspath(path)
    if folder and os.path.isfile(target):
        raise RunFolderError('%s %s: a file, not a folder' % (option, path))
    if not folder and os.path.isdir(target):
        raise RunFolderError('%s %s: a folder, not a file' % (option, path))
    existing = _nearest_existing(target if folder else os.path.dirname(target))
    if not os.path.isdir(existing):
        raise RunFolderError('%s %s: %s is a file, not a folder' % (option, path, existing))
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise RunFolderError('%s %s: cannot write in %s (%s)'
                             % (option, path, existing, err.strerror or err)) from None
