"""The one run driver: everything a training command does around the loop, once.

``run(config, recipe)`` opens (or resumes) the run folder, builds the data, the model and its
stages, starts from a dense network (--init_from), chooses the teacher, restores the newest
checkpoint, trains through :func:`strassen_gluon.train.loop.run_stages` (Ctrl-C safe), and
writes the summary, the learning curves and the final line. A command is a typed configuration
plus a :class:`Recipe`, the few things that differ between tasks (data, model, stages, task).
The CIFAR-10, ImageNet and language-model commands, the notebook and the paper tables all train
through here.
"""
import dataclasses
import os
import shlex
import sys

from ..config import Phase, check_options
from ..errors import Interrupted, UsageError
from ..layers import set_phase
from .build import build_model, choose_teacher, contexts, init_from
from .checkpoint import folder_contents, latest_checkpoint
from .loop import LoopOptions, format_metrics, restore, run_stages, seed_everything
from .plots import save_learning_curves
from .precision import resolve_dtype, set_compute_dtype
from .run import epoch_log, explicit_fields, open_run, write_run, write_summary
from .schedule import stages_from_config
from .stages import enter_stage, has_spn
from .teacher import load_teacher

CURVES_NAME = 'curves.png'


class Recipe:
    """What one command trains. Subclasses set the attributes and implement the methods.

    ``task``      the run folder's task name (cifar10, imagenet, langmod)
    ``module``    the command, as ``python -m <module>`` runs it (for the resume hints)
    ``fixed``     options that define the model or its data: a resumed run keeps them
    ``presets(config)``                  {option: value} for the options the user did not set
    ``load_data(config, ctx, say)``      the data, with every check that can fail on user input
    ``model(config, data)``              (registry name, constructor options)
    ``stages(config, spn, say)``         the training stages (Stage list)
    ``calibration(net, data, ctx)``      a tuple of network inputs (for --init_from)
    ``load_teacher(path, config, data, ctx, say)``  a frozen teacher from --teacher_model
                                         (default: a run folder of a registry model)
    ``loop_options(config)``             LoopOptions fields that differ from the shared ones
    ``make_task(config, options, ctx, data, teacher)``  the loop's Task
    ``cost(net, config, ctx)``           operation counts for the summary (None if unknown)
    ``record(data)``                     extra fields of config.json
    ``result(summary)``                  the final line's text
    """
    task = None
    module = None
    fixed = ()
    prefix = ''     # of every printed line (a dist_sync worker's number)
    bfloat16_pays = True   # False: --dtype auto keeps float32 (measured slower in bfloat16)

    def default_name(self, config):
        return config.model

    def presets(self, config):
        return {}

    def prepare(self, config):
        """The configuration this process runs (a dist_sync worker's own folder); checks."""
        return config

    def load_data(self, config, ctx, say):
        raise NotImplementedError

    def model(self, config, data):
        raise NotImplementedError

    def stages(self, config, spn, say):
        raise NotImplementedError

    def calibration(self, net, data, ctx):
        raise NotImplementedError

    def load_teacher(self, path, config, data, ctx, say):
        return load_teacher(path, ctx, say)

    def use_teacher(self, config):
        return True

    def check_init_source(self, config, data):
        pass

    def loop_options(self, config):
        return {}

    def make_task(self, config, options, ctx, data, teacher):
        raise NotImplementedError

    def after_restore(self, net):
        pass

    def cost(self, net, config, ctx):
        return None

    def record(self, data):
        return {}

    def result(self, summary):
        return ''


class PhasedRecipe(Recipe):
    """A classifier trained in the paper's three stages (a PhasedConfig): ``paper`` is the
    command's schedule, ``fine_tune`` the preset of --init_from."""
    paper = None
    fine_tune = {}

    def presets(self, config):
        return dict(self.fine_tune) if config.init_from else {}

    def stages(self, config, spn, say):
        stages, notes = stages_from_config(config, spn, self.paper)
        for note in notes:
            say(note)
        return stages


def apply_presets(config, presets, explicit):
    """`config` with the preset values of the options the user did not set."""
    for name, value in presets.items():
        if name not in explicit:
            setattr(config, name, list(value) if isinstance(value, list) else value)
    return config


def resume_hint(recipe, run_dir):
    return 'python -m %s --resume %s' % (recipe.module, shlex.quote(run_dir))


def _decay(spec):
    held = ' W_c frozen' if spec.frozen_wc else ''
    if spec.shape == 'cosine':
        return ' cosine' + held
    return (' steps %s' % ','.join(map(str, spec.steps)) if spec.steps else '') + held


def _say(*parts):
    print(*parts, flush=True)


def _prefixed(say, prefix):
    return (lambda *parts: say(prefix + ' '.join(map(str, parts)))) if prefix else say


def run(config, recipe, explicit=None, command=None, say=None):
    """Train (or resume) the run `config` describes; returns its summary (schema:
    strassen_gluon.train.run), or None when stopped early by ``stop_after_epochs``.

    `explicit`: the options the user set (they win over presets and, on resume, over the stored
    configuration); default those that differ from their defaults. `command`: the command line,
    for the record. Raises the library's errors (UsageError, DataError, RunFolderError,
    Diverged, Interrupted); nothing is written before the options and the data have been
    checked.
    """
    explicit = explicit_fields(config) if explicit is None else set(explicit)
    check_options(config)
    config = apply_presets(config, recipe.presets(config), explicit)
    config = recipe.prepare(config)
    say = _prefixed(say or _say, recipe.prefix)
    run_dir, config, record = open_run(config, recipe.task, recipe.fixed,
                                       command or 'train(%r)' % (config,), explicit,
                                       default_name=recipe.default_name(config))
    ctx = contexts(config.devices, say)
    # Before the first computation of the process (AMX is enabled there); GPUs stay float32.
    if ctx[0].device_type == 'gpu':
        dtype = 'float32'
    elif config.dtype == 'auto' and not recipe.bfloat16_pays:
        dtype = 'float32'
        say('--dtype auto: float32 (%s trains slower in bfloat16, see docs/precision.md)'
            % recipe.task)
    else:
        dtype = resolve_dtype(config.dtype, say)
    data = recipe.load_data(config, ctx, say)
    name, kwargs = recipe.model(config, data)
    net = build_model(name, kwargs)
    spn = has_spn(net)
    stages = recipe.stages(config, spn, say)
    if not stages:
        raise UsageError('no epochs to train (all stage lengths are 0)')
    if config.init_from and not spn:
        raise UsageError('--init_from converts a dense network into a Strassen one; %s has no '
                         'SPN layers' % name)
    seed_everything(config.seed)
    net.initialize(ctx=ctx)
    dense = None
    if config.init_from:  # also on resume: the dense network teaches (the checkpoint wins)
        recipe.check_init_source(config, data)
        calibration = recipe.calibration(net, data, ctx)
        net(*calibration)  # shapes known before the dense weights are copied in
        dense, _ = init_from(config.init_from, net, name, ctx, calibration,
                             download=getattr(config, 'download', True), say=say)
    teacher = None
    if recipe.use_teacher(config):
        teacher = choose_teacher(config, dense,
                                 lambda path: recipe.load_teacher(path, config, data, ctx, say),
                                 say)
    # The products in `dtype`; parameters, optimizer state and checkpoints stay float32.
    for model in (net, teacher):
        if model is not None:
            set_compute_dtype(model, dtype)
    if not config.resume:   # as resolved: e.g. the data folder an environment variable named
        record['config'] = dataclasses.asdict(config)
    extra = recipe.record(data)
    write_run(run_dir, record, model=name, model_kwargs=kwargs, **extra)

    start, checkpoint = restore(net, run_dir, stages, ctx)
    recipe.after_restore(net)
    net.hybridize(static_alloc=True)
    options = LoopOptions(**dict(dict(
        momentum=getattr(config, 'momentum', 0.9), wd=getattr(config, 'wd', 1e-4),
        dist_lambda=config.dist_lambda, dist_temp=config.dist_temp,
        sync_every=getattr(config, 'sync_every', 50), seed=config.seed,
        progress=not config.quiet and sys.stderr.isatty(),
        keep_checkpoints=config.keep_checkpoints,
        kvstore='device' if len(ctx) > 1 else None, print_fn=say),
        **recipe.loop_options(config)))
    task = recipe.make_task(config, options, ctx, data, teacher)
    title = '%s (%s)%s' % (name, ', '.join('%s=%s' % kv for kv in sorted(kwargs.items())
                                         if not isinstance(kv[1], (list, dict)))
                         or 'model defaults', '' if dtype == 'float32' else ' in ' + dtype)

    def curves():
        save_learning_curves(epoch_log(run_dir), os.path.join(run_dir, CURVES_NAME), title)

    if config.init_from and checkpoint is None:
        # The numbers that show the conversion worked: the converted network in full precision
        # (exact where the conversion is), and as a quantized first stage starts, lower: its batch
        # norms keep the unquantized layers' running statistics until training moves them.
        set_phase(net, Phase.FULL)
        say('converted network in full precision: %s' % format_metrics(task.evaluate(net)))
        enter_stage(net, stages[0])
        if has_spn(net) and Phase.parse(stages[0].phase) != Phase.FULL:
            say('converted network in stage %s, before fine-tuning: %s (its batch norms still '
                'hold the full-precision statistics)'
                % (stages[0].name, format_metrics(task.evaluate(net))))
    if start[0] < len(stages):
        if checkpoint is not None:
            say('resuming %s at stage %s, epoch %d (from %s)'
                % (run_dir, stages[start[0]].name, start[1] + 1, os.path.basename(checkpoint)))
        plan = ', '.join('%s %d ep lr %g%s' % (s.name, s.epochs, s.lr, _decay(s)) for s in stages)
        say('%s on %s; stages: %s; run folder %s'
            % (title, ', '.join(str(c) for c in ctx), plan, run_dir))
        meta = dict(model=name, model_kwargs=kwargs, seed=config.seed, task=recipe.task,
                    run_dir=os.path.abspath(run_dir), **extra)
        try:
            status = run_stages(task, net, stages, run_dir, meta, start=start,
                                checkpoint=checkpoint,
                                stop_after_epochs=config.stop_after_epochs,
                                on_stage_end=lambda spec: curves())
        except KeyboardInterrupt:
            curves()
            saved = latest_checkpoint(run_dir) is not None
            raise Interrupted('interrupted; %s: continue with %s' % (
                'the last complete epoch is saved' if saved else 'no epoch had finished, so '
                'nothing is saved yet', resume_hint(recipe, run_dir))) from None
        if status == 'stopped':
            curves()
            say('stopped after %d epoch(s); continue with: %s'
                % (config.stop_after_epochs, resume_hint(recipe, run_dir)))
            return None
    else:
        say('%s: the run is already finished' % run_dir)
        curves()
    enter_stage(net, stages[-1])
    summary = write_summary(run_dir, record, task, stages, cost=recipe.cost(net, config, ctx),
                            extra=dict(folder=folder_contents(run_dir), dtype=dtype))
    cost = summary['cost']
    say('%s%s; %s' % (recipe.result(summary),
                      '; %s mults, %s adds, %.3f MB' % (f"{cost['mults']:,}", f"{cost['adds']:,}",
                                                        cost['bits'] / 8e6) if cost else '',
                      os.path.join(run_dir, 'summary.json')))
    return summary
