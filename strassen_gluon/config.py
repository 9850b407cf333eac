"""Shared enums and small typed settings; imports nothing from the package."""
from dataclasses import dataclass
from enum import IntEnum
from typing import Optional


class Phase(IntEnum):
    """What an SPN layer computes. The values are the original code's `sp_mode` numbers.

    DENSE      the original dense layer (convolution, fully connected, LSTM) with its own weight
    FULL       the sum-product network in full precision
    TERNARY    W_b and W_c ternary (straight-through gradients): the Strassen layer
    TERNARY_B  only W_b ternary
    TERNARY_C  only W_c ternary
    """
    DENSE = 0
    FULL = 1
    TERNARY = 2
    TERNARY_B = 3
    TERNARY_C = 4

    @property
    def ternary_b(self):
        return self in (Phase.TERNARY, Phase.TERNARY_B)

    @property
    def ternary_c(self):
        return self in (Phase.TERNARY, Phase.TERNARY_C)

    @classmethod
    def parse(cls, value):
        """Accept a Phase, its number or its name (any case)."""
        if isinstance(value, Phase):
            return value
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                raise ValueError('unknown phase %r; choose one of %s'
                                 % (value, ', '.join(p.name.lower() for p in cls))) from None
        try:
            return cls(int(value))
        except (ValueError, TypeError):
            raise ValueError('unknown phase %r; valid numbers are 0-4' % (value,)) from None


@dataclass
class RunConfig:
    """Options every training command shares (``strassen_gluon.cli`` spells them the same way
    for all three). A task's configuration extends this with its own fields.

    devices: None uses GPU 0 when there is one, else the CPU (with a message); '-1' or '' is
    the CPU; '0' or '0,1' GPUs (several: data-parallel). resume: a run folder, or 'latest' for
    the newest run in log_dir. teacher_model: a run or checkpoint folder of a trained model
    whose logits teach the student (dist_lambda 0 turns distillation off).
    """
    log_dir: str = 'runs'
    run_name: Optional[str] = None
    resume: Optional[str] = None
    seed: int = 321
    devices: Optional[str] = None
    quiet: bool = False
    stop_after_epochs: Optional[int] = None
    keep_checkpoints: int = 2
    teacher_model: Optional[str] = None
    dist_lambda: float = 0.5
    dist_temp: float = 1.0
