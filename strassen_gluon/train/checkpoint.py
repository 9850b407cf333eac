"""Self-describing, crash-safe checkpoints that verify themselves.

A checkpoint is a folder ``ckpt-<tag>/`` holding ``model.params``, ``trainer<i>.states`` (one per
trainer given: the loop gives none at the end of a stage, whose successor starts a fresh
optimizer) and ``meta.json``: whatever the caller needs to resume (stage, epoch, learning rate,
configuration, git revision) plus the SHA-256 of every other file in the folder. It is written
under a temporary name and renamed into place, read back and verified against those checksums,
then ``latest.json`` is replaced atomically to point at it; only then are older checkpoints
removed (``keep`` of them stay, one by default: the newest has been verified on disk before the
older one goes). A kill at any moment therefore leaves a complete checkpoint behind.
:func:`folder_contents` says what a run folder holds, for its summary.

:func:`resume_checkpoint` does not trust ``latest.json`` alone: it takes the newest checkpoint
whose meta parses and whose files match their checksums, so a damaged, missing or stale pointer
and a truncated parameter file are survived, and it raises :class:`RunFolderError` naming the
files when the folder has checkpoints (or logged epochs) but none of them verifies. It never
silently starts a run again.
"""
import hashlib
import json
import os
import shutil
import subprocess

from ..errors import RunFolderError
from ..files import write_text_atomic

LATEST = 'latest.json'
META = 'meta.json'
PARAMS = 'model.params'
PREFIX = 'ckpt-'


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
    write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=True))


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path):
    with open(path, 'rb') as f:
        os.fsync(f.fileno())


def save_checkpoint(directory, tag, net, trainers=(), meta=None, keep=1):
    """Save `net`'s parameters, the trainers' states and `meta` as checkpoint `tag`.

    Returns the checkpoint's folder. The new checkpoint is read back and verified before older
    ones are removed (RunFolderError, older ones kept, if it does not verify); `keep` is how
    many most recent checkpoints stay (keep=2 also survives damage to the newest after it was
    written, at twice the space).
    """
    os.makedirs(directory, exist_ok=True)
    name = PREFIX + str(tag)
    final = os.path.join(directory, name)
    tmp = final + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    files = [PARAMS]
    net.save_parameters(os.path.join(tmp, PARAMS))
    for i, trainer in enumerate(trainers):
        files.append('trainer%d.states' % i)
        trainer.save_states(os.path.join(tmp, files[-1]))
    checksums = {}
    for f in files:
        _fsync_file(os.path.join(tmp, f))
        checksums[f] = sha256(os.path.join(tmp, f))
    write_json_atomic(os.path.join(tmp, META), dict(meta or {}, tag=str(tag), checksums=checksums))
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    problem = verify(final)
    if problem is not None:
        shutil.rmtree(final, ignore_errors=True)
        raise RunFolderError('the checkpoint just written does not verify: %s; it was removed '
                             'and older checkpoints are kept' % problem)
    write_json_atomic(os.path.join(directory, LATEST), {'checkpoint': name})
    old = [d for d in checkpoint_folders(directory) if os.path.basename(d) != name]
    for d in old[:max(0, len(old) - (keep - 1))]:
        shutil.rmtree(d, ignore_errors=True)
    return final


def checkpoint_folders(directory):
    """The complete-looking checkpoint folders of `directory`, oldest first (tags sort by
    position: they are zero-padded)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [os.path.join(directory, d) for d in sorted(names)
            if d.startswith(PREFIX) and not d.endswith('.tmp')
            and os.path.isdir(os.path.join(directory, d))]


def verify(checkpoint):
    """None if `checkpoint` is complete and intact, else the reason (a sentence naming a file)."""
    path = os.path.join(checkpoint, META)
    try:
        meta = read_meta(checkpoint)
    except (OSError, ValueError) as err:
        return '%s cannot be read (%s)' % (path, err)
    checksums = meta.get('checksums')
    if not isinstance(checksums, dict) or PARAMS not in checksums:
        return '%s records no checksums' % path
    for name, expected in sorted(checksums.items()):
        f = os.path.join(checkpoint, name)
        if not os.path.isfile(f):
            return '%s is missing' % f
        if sha256(f) != expected:
            return '%s does not match the checksum recorded when it was written (truncated or ' \
                   'damaged)' % f
    return None


def pointed_checkpoint(directory):
    """The checkpoint folder that latest.json names, or None (with no pointer, or a damaged one)."""
    try:
        with open(os.path.join(directory, LATEST)) as f:
            return os.path.join(directory, json.load(f)['checkpoint'])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def latest_checkpoint(directory):
    """The newest checkpoint folder of `directory` that verifies, or None."""
    for ckpt in reversed(checkpoint_folders(directory)):
        if verify(ckpt) is None:
            return ckpt
    return None


def resume_checkpoint(directory, logged_epochs=0, say=print):
    """The checkpoint to resume a run from: the newest that verifies, whatever latest.json says.

    Returns None for a run that never wrote one (and logged no epoch). Raises RunFolderError
    when checkpoints exist but none verifies, or epochs were logged without any checkpoint.
    """
    folders = checkpoint_folders(directory)
    problems = []
    for ckpt in reversed(folders):
        problem = verify(ckpt)
        if problem is None:
            pointer = pointed_checkpoint(directory)
            if pointer != ckpt:
                what = ('missing' if not os.path.exists(os.path.join(directory, LATEST)) else
                        'damaged' if pointer is None else 'stale (it names %s)'
                        % os.path.basename(pointer))
                say('%s is %s; resuming from %s, the newest checkpoint that verifies'
                    % (os.path.join(directory, LATEST), what, os.path.basename(ckpt)))
            for p in problems:
                say('skipped a checkpoint: %s' % p)
            return ckpt
        problems.append(problem)
    if problems:
        raise RunFolderError('cannot resume %s: no checkpoint verifies: %s'
                             % (directory, '; '.join(problems)))
    if logged_epochs:
        raise RunFolderError('cannot resume %s: its log records %d epoch(s) but the folder holds '
                             'no checkpoint (%s is gone)'
                             % (directory, logged_epochs, os.path.join(directory, LATEST)))
    return None


def read_meta(checkpoint):
    with open(os.path.join(checkpoint, META)) as f:
        meta = json.load(f)
    if not isinstance(meta, dict):
        raise ValueError('not a JSON object')
    return stage_names(meta)


def stage_names(record):
    """A checkpoint's meta or a log line in today's words. Run folders written before training
    stages and layer phases had two names called the stage 'phase' (with 'phase_index') and the
    layer phase 'phase_mode'; they resume as they are."""
    if 'phase_index' not in record:
        return record
    new = {k: v for k, v in record.items() if k not in ('phase', 'phase_index', 'phase_mode')}
    new.update(stage=record.get('phase'), stage_index=record['phase_index'])
    if 'phase_mode' in record:
        new['phase'] = record['phase_mode']
    if isinstance(record.get('record'), dict):
        new['record'] = stage_names(record['record'])
    return new


def load_checkpoint(checkpoint, net, trainers=(), ctx=None):
    """Load parameters (and trainer states, if given) from a checkpoint folder; return meta."""
    net.load_parameters(os.path.join(checkpoint, PARAMS), ctx=ctx)
    load_trainer_states(checkpoint, trainers)
    return read_meta(checkpoint)


def load_trainer_states(checkpoint, trainers):
    """Load the optimizer states saved with a checkpoint into `trainers` (in the same order).

    Separate from the parameters because a trainer can only be built once the model is in the
    right stage (which parameters train), i.e. after the parameters are loaded.
    """
    for i, trainer in enumerate(trainers):
        states = os.path.join(checkpoint, 'trainer%d.states' % i)
        if os.path.isfile(states):
            trainer.load_states(states)


def find_checkpoint(path):
    """The checkpoint folder for a run folder or a checkpoint folder (None if neither)."""
    if os.path.isfile(os.path.join(path, META)) and os.path.isfile(os.path.join(path, PARAMS)):
        return path
    return latest_checkpoint(path)


def folder_contents(run_dir):
    """What `run_dir` holds, for its summary: {'bytes': total size, 'checkpoint': the checkpoint
    folder latest.json names (None without one), 'files': {relative path: bytes}}."""
    files = {}
    for folder, _, names in os.walk(run_dir):
        for name in names:
            path = os.path.join(folder, name)
            files[os.path.relpath(path, run_dir)] = os.path.getsize(path)
    checkpoint = pointed_checkpoint(run_dir)
    return {'bytes': sum(files.values()), 'files': dict(sorted(files.items())),
            'checkpoint': os.path.basename(checkpoint) if checkpoint else None}
