"""Load a trained model as a frozen distillation teacher from a run or checkpoint folder."""
import os

from ..layers import set_phase
from ..models import get_model
from .checkpoint import latest_checkpoint, load_checkpoint, read_meta
from .phases import has_spn


def find_checkpoint(path):
    """The checkpoint folder for a run folder or a checkpoint folder (None if neither)."""
    if os.path.isfile(os.path.join(path, 'meta.json')) and \
            os.path.isfile(os.path.join(path, 'model.params')):
        return path
    return latest_checkpoint(path)


def load_teacher(path, ctx, say=print):
    """A frozen, hybridized model rebuilt from the model name and options its checkpoint stores.

    Raises ValueError when `path` holds no checkpoint of the training commands.
    """
    ckpt = find_checkpoint(path)
    if ckpt is None:
        raise ValueError('--teacher_model %s: no checkpoint there (give a run folder of a '
                         'training command or one of its ckpt-* folders)' % path)
    meta = read_meta(ckpt)
    teacher = get_model(meta['model'], **meta.get('model_kwargs', {}))
    if has_spn(teacher):
        set_phase(teacher, meta.get('phase_mode', 1))
    load_checkpoint(ckpt, teacher, ctx=ctx)
    for param in teacher.collect_params().values():
        param.grad_req = 'null'
    teacher.hybridize(static_alloc=True)
    accuracy = meta.get('val_acc')
    say('teacher: %s from %s (val acc %s%s)'
        % (meta['model'], ckpt,
           '%.2f%%' % (100 * accuracy) if isinstance(accuracy, (int, float)) else 'unknown',
           '' if meta.get('finished') else ', run not finished'))
    return teacher
