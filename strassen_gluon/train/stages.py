"""Put a model into a training stage and build that stage's optimizer.

The SPN layers decide which of their parameters train in each phase (``SPNBlock.phase`` and
``.frozen`` set ``grad_req``); here the whole model is switched and a fresh Trainer is made over
exactly the parameters that train, so the momentum of one stage never leaks into the next.
"""
from mxnet import gluon

from ..layers import freeze_ternary, set_phase, spn_layers


def has_spn(net):
    """True when the model has SPN layers (and so trains in several stages)."""
    return bool(spn_layers(net))


def enter_stage(net, spec):
    """Switch every SPN layer of `net` to `spec.phase` and (un)freeze W_b/W_c as `spec.frozen`
    (W_c alone as `spec.frozen_wc`).

    Both calls drop cached graphs, so a hybridized model rebuilds its graph for the new stage.
    """
    if has_spn(net):
        set_phase(net, spec.phase)
        freeze_ternary(net, spec.frozen, spec.frozen_wc)


def trainable_params(net):
    """The parameters with gradients in the current stage, in a stable (name) order."""
    params = net.collect_params()
    return {name: p for name, p in sorted(params.items()) if p.grad_req != 'null'}


def make_trainer(net, lr, momentum=0.9, wd=1e-4, kvstore='device'):
    """A fresh SGD Trainer over the parameters that train in the current stage.

    Weight decay applies to every trained parameter (ã, BN, classifier included), as in the
    original. Call `enter_stage` first.
    """
    return gluon.Trainer(trainable_params(net), 'sgd',
                         {'learning_rate': lr, 'momentum': momentum, 'wd': wd},
                         kvstore=kvstore)
