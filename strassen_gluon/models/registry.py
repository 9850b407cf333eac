"""The one table of models, filled by the model modules with @register.

A model owns its initialiser: ``register(name, init=...)`` gives every weight of the built model
that has no initialiser of its own that one, so ``get_model(name).initialize(ctx=ctx)`` draws
exactly what the training commands draw (biases, batch norms and the SPN layers' own parameters
keep theirs: a per-parameter initialiser skips Gluon's dispatch by name, which sets them).

A model also states its example input and how many per-stage values its ``nbr_mul`` and
``out_patch`` lists take: ``register(name, input_shape=(1, 3, 224, 224), stages=5)``. A built
image model carries the shape as ``net.default_input_shape`` (what ``count`` and ``export``
feed it); a model with inputs of its own (the language model) defines ``example_inputs``.
"""
_MODELS = {}


def register(name, init=None, input_shape=None, stages=None):
    """Decorator: make a constructor buildable by name with get_model(name, **kwargs).

    `init`: a function returning the model's weight initialiser (None: Gluon's default).
    `input_shape`: the model's example input, e.g. (1, 3, 32, 32) for one CIFAR image.
    `stages`: the length of a per-stage nbr_mul / out_patch list (None: the model takes none).
    """
    def add(constructor):
        if name in _MODELS:
            raise ValueError('model %r is registered twice' % name)
        _MODELS[name] = dict(constructor=constructor, init=init,
                             input_shape=tuple(input_shape) if input_shape else None,
                             stages=stages)
        return constructor
    return add


def _entry(name):
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError('unknown model %r; choose one of: %s'
                         % (name, ', '.join(list_models()))) from None


def get_model(name, **kwargs):
    """Build a registered model; unknown names raise ValueError listing the valid ones."""
    entry = _entry(name)
    net = entry['constructor'](**kwargs)
    if entry['init'] is not None:
        own_init(net, entry['init']())
    if entry['input_shape'] is not None and getattr(net, 'default_input_shape', None) is None:
        net.default_input_shape = entry['input_shape']
    return net


def model_stages(name):
    """How many values a per-stage nbr_mul / out_patch list of model `name` takes (or None)."""
    return _entry(name)['stages']


def own_init(net, weight_init):
    """Set `weight_init` on every parameter of `net` named '*weight' without an initialiser."""
    for param in net.collect_params().values():
        if param.init is None and param.name.endswith('weight'):
            param.init = weight_init
    return net


def list_models():
    return sorted(_MODELS)
