"""Load a trained model as a frozen distillation teacher from a run or checkpoint folder."""
from ..errors import UsageError
from ..layers import set_phase
from ..models import get_model
from .checkpoint import find_checkpoint, load_checkpoint, read_meta
from .phases import has_spn


def load_teacher(path, ctx, say=print):
    """A frozen, hybridized model rebuilt from the model name and options its checkpoint stores.

    Raises UsageError when `path` holds no checkpoint of the training commands.
    """
    ckpt = find_checkpoint(path)
    if ckpt is None:
        raise UsageError('%s: no checkpoint there (give a run folder of a training command or '
                         'one of its ckpt-* folders)' % path)
    meta = read_meta(ckpt)
    teacher = get_model(meta['model'], **meta.get('model_kwargs', {}))
    if has_spn(teacher):
        set_phase(teacher, meta.get('phase_mode', 1))
    load_checkpoint(ckpt, teacher, ctx=ctx)
    for param in teacher.collect_params().values():
        param.grad_req = 'null'
    teacher.hybridize(static_alloc=True)
    shown = ['%s %.4g' % kv for kv in sorted(meta.get('metrics', {}).items())
             if isinstance(kv[1], (int, float))]
    say('teacher: %s from %s (%s%s)' % (meta['model'], ckpt, ', '.join(shown) or 'no metrics',
                                       '' if meta.get('finished') else ', run not finished'))
    return teacher
