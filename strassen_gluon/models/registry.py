"""The one table of models, filled by the model modules with @register.

A model owns its initialiser: ``register(name, init=...)`` gives every weight of the built model
that has no initialiser of its own that one, so ``get_model(name).initialize(ctx=ctx)`` draws
exactly what the training commands draw (biases, batch norms and the SPN layers' own parameters
keep theirs: a per-parameter initialiser skips Gluon's dispatch by name, which sets them).
"""
_MODELS = {}


def register(name, init=None):
    """Decorator: make a constructor buildable by name with get_model(name, **kwargs).

    `init`: a function returning the model's weight initialiser (None: Gluon's default).
    """
    def add(constructor):
        if name in _MODELS:
            raise ValueError('model %r is registered twice' % name)
        _MODELS[name] = (constructor, init)
        return constructor
    return add


def get_model(name, **kwargs):
    """Build a registered model; unknown names raise ValueError listing the valid ones."""
    try:
        constructor, init = _MODELS[name]
    except KeyError:
        raise ValueError('unknown model %r; choose one of: %s'
                         % (name, ', '.join(list_models()))) from None
    net = constructor(**kwargs)
    if init is not None:
        own_init(net, init())
    return net


def own_init(net, weight_init):
    """Set `weight_init` on every parameter of `net` named '*weight' without an initialiser."""
    for param in net.collect_params().values():
        if param.init is None and param.name.endswith('weight'):
            param.init = weight_init
    return net


def list_models():
    return sorted(_MODELS)
