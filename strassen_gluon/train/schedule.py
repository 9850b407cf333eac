"""The training phases of the paper's CIFAR-10 protocol and their learning rates, as plain data.

SPEC 2.2 (the notebook and the VGG script):

====== ============================ ======== ======= ===========================
phase  layers                       epochs   lr      ×0.1 at the start of epoch
====== ============================ ======== ======= ===========================
full   SPN in full precision        250      0.1     150, 200
ternary W_b, W_c ternary (STE)      40       0.01    10, 20, 30
frozen W_b, W_c ternary and frozen  10       0.001   (constant)
====== ============================ ======== ======= ===========================

Each phase has its own optimizer. A full-precision model (no SPN layers) trains in one phase,
``dense``, with the schedule of the first.

The original stepped its schedule by update count at multiples of the updates per epoch, so the
learning rate is constant within an epoch: it is a pure function of (phase, epoch) here.

When a phase is given fewer (or more) epochs than the paper's, its step epochs are scaled in
proportion, ``round(step · epochs / paper_epochs)``, unless explicit steps are given; e.g. 25
full-precision epochs decay at epochs 15 and 20. Steps at or after the end of a phase never act.
"""
from dataclasses import dataclass

from ..config import Phase


@dataclass(frozen=True)
class PhaseSpec:
    """One training phase: what the SPN layers compute, how long, and at which learning rate."""
    name: str
    phase: Phase
    epochs: int
    lr: float
    steps: tuple = ()          # epochs (0-based, within the phase) at which lr is multiplied
    factor: float = 0.1
    frozen: bool = False       # W_b and W_c kept fixed (still ternary in the forward pass)
    # Plateau policy instead of steps: lr *= factor after an epoch whose primary metric did not
    # improve on the previous epoch's by more than decay_when (the language model's policy).
    decay_when: float = None

    def __post_init__(self):
        if self.epochs < 0:
            raise ValueError('phase %s: epochs must be >= 0, not %r' % (self.name, self.epochs))
        if not self.lr > 0:
            raise ValueError('phase %s: lr must be positive, not %r' % (self.name, self.lr))
        if self.decay_when is not None and not self.decay_when >= 0:
            raise ValueError('phase %s: decay_when must be >= 0, not %r'
                             % (self.name, self.decay_when))
        if list(self.steps) != sorted(self.steps) or any(s < 0 for s in self.steps):
            raise ValueError('phase %s: steps must be increasing epochs >= 0, not %r'
                             % (self.name, self.steps))


PAPER_PHASES = (
    PhaseSpec('full', Phase.FULL, 250, 0.1, (150, 200)),
    PhaseSpec('ternary', Phase.TERNARY, 40, 0.01, (10, 20, 30)),
    PhaseSpec('frozen', Phase.TERNARY, 10, 0.001, (), frozen=True),
)
PAPER_BY_NAME = {p.name: p for p in PAPER_PHASES}


def scale_steps(steps, paper_epochs, epochs):
    """Move step epochs in proportion to a changed phase length (a step never lands on 0)."""
    if epochs == paper_epochs or paper_epochs == 0:
        return tuple(steps)
    return tuple(max(1, round(s * epochs / paper_epochs)) for s in steps)


def make_phase(name, epochs=None, lr=None, steps=None, factor=None):
    """The paper's phase `name` ('full', 'ternary', 'frozen' or 'dense'), with overrides.

    None keeps the paper's value; `steps=None` with changed `epochs` scales the paper's steps.
    'dense' is the single phase of a full-precision model: the 'full' schedule in Phase.DENSE.
    """
    paper = PAPER_BY_NAME['full' if name == 'dense' else name]
    epochs = paper.epochs if epochs is None else int(epochs)
    steps = scale_steps(paper.steps, paper.epochs, epochs) if steps is None else tuple(steps)
    return PhaseSpec(name=name, phase=Phase.DENSE if name == 'dense' else paper.phase,
                     epochs=epochs, lr=paper.lr if lr is None else float(lr), steps=steps,
                     factor=paper.factor if factor is None else float(factor),
                     frozen=paper.frozen)


def paper_phases(spn=True, epochs=(None, None, None), lrs=(None, None, None),
                 steps=(None, None, None), factor=None):
    """The phases of one run: three for a Strassen model, one ('dense') for a dense model.

    `epochs`, `lrs` and `steps` are per-phase overrides (None = the paper's value). Phases with
    0 epochs are dropped.
    """
    names = ('full', 'ternary', 'frozen') if spn else ('dense',)
    specs = [make_phase(n, e, lr, s, factor) for n, e, lr, s in zip(names, epochs, lrs, steps)]
    return [s for s in specs if s.epochs > 0]


def learning_rate(spec, epoch):
    """The learning rate of epoch `epoch` (0-based) of phase `spec`."""
    if epoch < 0:
        raise ValueError('epoch must be >= 0, not %r' % (epoch,))
    decays = sum(1 for s in spec.steps if epoch >= s)
    return float('%.12g' % (spec.lr * spec.factor ** decays))  # 0.001, not 0.0010000000000000002
