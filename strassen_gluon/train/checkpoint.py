"""Self-describing, crash-safe checkpoints.

A checkpoint is a folder ``ckpt-<tag>/`` holding ``model.params``, ``trainer.states`` (one per
trainer, optional) and ``meta.json`` (whatever the caller needs to resume: phase, epoch, learning
rate, configuration, git revision). It is written under a temporary name and renamed into place,
then ``latest.json`` is replaced atomically to point at it; only then are older checkpoints
removed. A kill at any moment therefore leaves the previous checkpoint intact and pointed to.
"""
import json
import os
import shutil
import subprocess

LATEST = 'latest.json'


def git_revision(path=None):
    """The git commit of the code (with '+dirty' if modified), or None outside a checkout."""
    cwd = path or os.path.dirname(os.path.abspath(__file__))
    try:
        sha = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ('+dirty' if dirty else '')
    except (OSError, subprocess.SubprocessError):
        return None


def write_json_atomic(path, obj):
    """Write JSON to `path` so that readers see either the old or the new file, never half."""
    tmp = '%s.tmp-%d' % (path, os.getpid())
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(directory, tag, net, trainers=(), meta=None, keep=1):
    """Save `net`'s parameters, the trainers' states and `meta` as checkpoint `tag`.

    Returns the checkpoint's folder. `keep` is how many most recent checkpoints to keep.
    """
    os.makedirs(directory, exist_ok=True)
    name = 'ckpt-%s' % tag
    final = os.path.join(directory, name)
    tmp = final + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    net.save_parameters(os.path.join(tmp, 'model.params'))
    for i, trainer in enumerate(trainers):
        trainer.save_states(os.path.join(tmp, 'trainer%d.states' % i))
    write_json_atomic(os.path.join(tmp, 'meta.json'), dict(meta or {}, tag=str(tag)))
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    write_json_atomic(os.path.join(directory, LATEST), {'checkpoint': name})
    old = sorted(d for d in os.listdir(directory)
                 if d.startswith('ckpt-') and d != name and not d.endswith('.tmp'))
    for d in old[:max(0, len(old) - (keep - 1))]:
        shutil.rmtree(os.path.join(directory, d), ignore_errors=True)
    return final


def latest_checkpoint(directory):
    """The folder of the newest complete checkpoint in `directory`, or None."""
    try:
        with open(os.path.join(directory, LATEST)) as f:
            path = os.path.join(directory, json.load(f)['checkpoint'])
    except (OSError, ValueError, KeyError):
        return None
    return path if os.path.isfile(os.path.join(path, 'meta.json')) else None


def read_meta(checkpoint):
    with open(os.path.join(checkpoint, 'meta.json')) as f:
        return json.load(f)


def load_checkpoint(checkpoint, net, trainers=(), ctx=None):
    """Load parameters (and trainer states, if given) from a checkpoint folder; return meta."""
    net.load_parameters(os.path.join(checkpoint, 'model.params'), ctx=ctx)
    load_trainer_states(checkpoint, trainers)
    return read_meta(checkpoint)


def load_trainer_states(checkpoint, trainers):
    """Load the optimizer states saved with a checkpoint into `trainers` (in the same order).

    Separate from the parameters because a trainer can only be built once the model is in the
    right phase (which parameters train), i.e. after the parameters are loaded.
    """
    for i, trainer in enumerate(trainers):
        states = os.path.join(checkpoint, 'trainer%d.states' % i)
        if os.path.isfile(states):
            trainer.load_states(states)
