"""The run folder, one schema for every training command.

    <log_dir>/<run_name>/
        config.json     schema_version, task, the configuration, model and its options, every
                        command line that ran this folder, git revision, start time
        log.jsonl       one JSON object per epoch: stage, stage_index, epoch, global_epoch, lr,
                        train metrics, evaluation metrics, seconds, <unit>_per_s
        ckpt-p<i>-e<nnnn>/  checkpoints (model.params, trainer0.states, meta.json with checksums)
        latest.json     points at the newest checkpoint
        summary.json    written when the last stage ends (schema below)

summary.json (``SCHEMA_VERSION``): ``schema_version``, ``task`` (cifar10, imagenet, langmod),
``model``, ``model_kwargs``, ``config``, ``metric_names`` (the evaluation metrics: ``val_acc``;
``top1``/``top5``; ``val_ppl``/``test_ppl``), ``primary_metric``, ``metrics`` (their final
values), ``best`` (the best epoch by the primary metric), ``stages`` (per stage: epochs and the
final metrics), ``stage_plan``, ``cost`` (``mults``, ``adds``, ``bits``, ``per`` (image, time
step), ``input_shape``, ``excluding_fc_head``), ``throughput`` (``value``, ``unit``),
``eval_images`` (how many images the last evaluation scored, classification), ``folder`` (what
the run folder holds: ``bytes``, ``files`` with their sizes, ``checkpoint``), ``dtype`` (the
arithmetic the run ended in: float32 or bfloat16), ``train_seconds`` and ``eval_seconds``
(summed over the epochs; the latter None when an epoch predates its logging), ``command``,
``commands``, ``git``, ``started``, ``finished``.
``python -m strassen_gluon.report`` reads exactly this.
"""
import dataclasses
import datetime
import glob
import json
import os

from ..errors import RunFolderError, UsageError
from ..files import require_writable
from .checkpoint import git_revision, stage_names, write_json_atomic
from .logs import read_jsonl

SCHEMA_VERSION = 2   # 2: training stages are 'stage', 'stages', 'stage_plan' (1: 'phase...')
CONFIG_NAME = 'config.json'
SUMMARY_NAME = 'summary.json'
LOG_NAME = 'log.jsonl'
# Options that concern one invocation only: a resumed run does not inherit them.
PER_INVOCATION = ('stop_after_epochs', 'run_name', 'resume')


def explicit_fields(config):
    """The fields of a dataclass configuration that differ from their defaults."""
    out = set()
    for f in dataclasses.fields(config):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            out.add(f.name)
            continue
        if getattr(config, f.name) != default:
            out.add(f.name)
    return out


def newest_run(log_dir):
    runs = [d for d in glob.glob(os.path.join(log_dir, '*'))
            if os.path.isfile(os.path.join(d, CONFIG_NAME))]
    if not runs:
        raise UsageError('--resume: no run folder in %s (give the folder: --resume RUN_DIR)'
                         % log_dir)
    return max(runs, key=lambda d: os.path.getmtime(os.path.join(d, CONFIG_NAME)))


def read_config(run_dir, task):
    path = os.path.join(run_dir, CONFIG_NAME)
    if not os.path.isfile(path):
        raise UsageError('--resume %s: not a run folder (no %s)' % (run_dir, CONFIG_NAME))
    try:
        with open(path) as f:
            stored = json.load(f)
        if stored.get('task') != task:
            raise UsageError('--resume %s: a run of %r, not of %s' % (run_dir, stored.get('task'),
                                                                     task))
        stored['config']
    except (ValueError, KeyError, AttributeError) as err:
        raise RunFolderError('%s is damaged (%s: %s)' % (path, type(err).__name__, err)) from None
    return stored


def open_run(config, task, fixed, command, explicit=None, default_name=None):
    """The run folder, the effective configuration and the run record (config.json contents).

    A new run: ``<log_dir>/<run_name>`` (default ``<default_name>-<date-time>``), which must not
    hold a run yet. With ``config.resume`` (a folder, or 'latest'): the stored configuration,
    overridden by the fields in `explicit` (default: those that differ from their defaults),
    except the fields in `fixed`, which define the model and data and may not change. Nothing
    is written yet: call :func:`write_run` once the options have been checked.
    """
    explicit = explicit_fields(config) if explicit is None else set(explicit)
    if config.resume:
        run_dir = newest_run(config.log_dir) if config.resume == 'latest' else config.resume
        record = read_config(run_dir, task)
        stored = record['config']
        changed = [k for k in fixed if k in explicit and getattr(config, k) != stored.get(k)]
        if changed:
            raise UsageError('--resume: %s cannot change in a resumed run (stored: %s)'
                             % (', '.join('--' + k for k in changed),
                                ', '.join('%s=%r' % (k, stored.get(k)) for k in changed)))
        known = {f.name for f in dataclasses.fields(config)}
        merged = {k: v for k, v in stored.items() if k in known}
        merged.update({k: None for k in PER_INVOCATION})
        merged.update({k: getattr(config, k) for k in explicit if k in known})
        merged['resume'] = run_dir
        merged['log_dir'] = stored.get('log_dir', config.log_dir)
        require_writable(run_dir, '--resume', folder=True)
        record['commands'].append(command)
        return run_dir, type(config)(**merged), record
    name = config.run_name or '%s-%s' % (default_name or task,
                                         datetime.datetime.now().strftime('%Y%m%d-%H%M%S'))
    run_dir = os.path.join(config.log_dir, name)
    require_writable(run_dir, '--log_dir', folder=True)
    if os.path.isfile(os.path.join(run_dir, CONFIG_NAME)):
        raise UsageError('run folder %s exists; continue it with --resume %s or choose '
                         'another --run_name' % (run_dir, run_dir))
    record = dict(schema_version=SCHEMA_VERSION, task=task, config=dataclasses.asdict(config),
                  commands=[command], git=git_revision(),
                  started=datetime.datetime.now().isoformat(timespec='seconds'))
    return run_dir, config, record


def write_run(run_dir, record, **extra):
    """Create the folder and write config.json (the record plus e.g. model, model_kwargs)."""
    os.makedirs(run_dir, exist_ok=True)
    record.update(extra)
    write_json_atomic(os.path.join(run_dir, CONFIG_NAME), record)


def read_log(run_dir):
    """Every line of the run's log.jsonl, in today's words (checkpoint.stage_names)."""
    return [stage_names(r) for r in read_jsonl(os.path.join(run_dir, LOG_NAME))]


def epoch_log(run_dir):
    """The log lines of the epochs (the log may hold other events)."""
    return [r for r in read_log(run_dir) if 'stage_index' in r]


def write_summary(run_dir, record, task, stages, cost=None, extra=None):
    """summary.json from the run's log (schema: this module's docstring); returns it."""
    records = epoch_log(run_dir)
    if not records:
        return None
    primary, higher = task.primary_metric, task.higher_is_better
    scored = [r for r in records if isinstance(r.get(primary), (int, float))]
    best = (max if higher else min)(scored, key=lambda r: r[primary]) if scored else records[-1]
    names = sorted({k for r in records for k in r
                    if k.startswith(('val_', 'test_', 'top')) and isinstance(r[k], (int, float))})
    by_stage = {}
    for r in records:
        entry = by_stage.setdefault(r['stage'], {'epochs': 0})
        entry['epochs'] += 1
        entry['final'] = {k: r[k] for k in names if k in r}
    final = {}
    for r in records:  # the newest value of each metric (test_ppl: the last stage's)
        final.update({k: r[k] for k in names if k in r})
    seconds = sum(r['seconds'] for r in records)
    # Evaluation time is logged since December 2026 (None for a run with older epochs).
    eval_seconds = None if any('eval_seconds' not in r for r in records) else \
        sum(r['eval_seconds'] for r in records)
    unit = task.unit
    summary = dict(
        schema_version=SCHEMA_VERSION, task=record['task'], model=record.get('model'),
        model_kwargs=record.get('model_kwargs', {}), config=record['config'],
        metric_names=names, primary_metric=primary, metrics=final,
        best={'metric': primary, 'value': best.get(primary), 'stage': best['stage'],
              'epoch': best['epoch']},
        stages=by_stage,
        stage_plan=[dict(name=p.name, epochs=p.epochs, lr=p.lr, steps=list(p.steps),
                         factor=p.factor, decay_when=p.decay_when, frozen=p.frozen,
                         frozen_wc=p.frozen_wc, shape=p.shape)
                    for p in stages],
        cost=cost, throughput={'value': sum(r.get(unit, 0) for r in records) / max(seconds, 1e-9),
                               'unit': unit + '/s'},
        eval_images=records[-1].get('eval_images'),
        train_seconds=seconds, eval_seconds=eval_seconds, command=record['commands'][-1],
        commands=record['commands'],
        git=git_revision(), started=record.get('started'),
        finished=datetime.datetime.now().isoformat(timespec='seconds'),
        run_dir=os.path.abspath(run_dir))
    summary.update(extra or {})
    write_json_atomic(os.path.join(run_dir, SUMMARY_NAME), summary)
    return summary


def read_summary(path):
    """A summary.json of this schema (RunFolderError for another version or a damaged file)."""
    try:
        with open(path) as f:
            summary = json.load(f)
    except (OSError, ValueError) as err:
        raise RunFolderError('%s cannot be read: %s' % (path, err)) from None
    if not isinstance(summary, dict) or summary.get('schema_version') not in (1, SCHEMA_VERSION):
        raise RunFolderError('%s is not a summary of schema version %d' % (path, SCHEMA_VERSION))
    if summary['schema_version'] == 1:   # the same, with the training stages called phases
        old = summary
        summary = {k: v for k, v in old.items() if k not in ('phases', 'phase_plan')}
        summary.update(schema_version=SCHEMA_VERSION, stages=old.get('phases', {}),
                       stage_plan=old.get('phase_plan', []),
                       best=dict(old.get('best', {}), stage=old.get('best', {}).get('phase')))
    return summary
