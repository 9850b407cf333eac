"""Knowledge distillation (Hinton et al. 2015) as used by the original code.

loss = (1 - λ)·CE(student, labels) + λ·T²·CE(softmax(teacher / T), student / T)
"""


def distillation_loss(F, student_logits, teacher_logits, labels, lam=0.5, temperature=1.0):
    """Per-example loss (shape (batch,)) for logits of shape (batch, classes).

    With `teacher_logits=None` or λ = 0 it is the plain softmax cross-entropy.
    """
    hard = -F.pick(F.log_softmax(student_logits, axis=-1), labels, axis=-1)
    if teacher_logits is None or lam == 0:
        return hard
    t = float(temperature)
    soft_targets = F.softmax(F.BlockGrad(teacher_logits) / t, axis=-1)
    soft = -F.sum(soft_targets * F.log_softmax(student_logits / t, axis=-1), axis=-1)
    return (1.0 - lam) * hard + lam * t * t * soft
