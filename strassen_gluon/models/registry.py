"""The one table of models, filled by the model modules with @register."""
_MODELS = {}


def register(name):
    """Decorator: make a constructor buildable by name with get_model(name, **kwargs)."""
    def add(constructor):
        if name in _MODELS:
            raise ValueError('model %r is registered twice' % name)
        _MODELS[name] = constructor
        return constructor
    return add


def get_model(name, **kwargs):
    """Build a registered model; unknown names raise ValueError listing the valid ones."""
    try:
        constructor = _MODELS[name]
    except KeyError:
        raise ValueError('unknown model %r; choose one of: %s'
                         % (name, ', '.join(list_models()))) from None
    return constructor(**kwargs)


def list_models():
    return sorted(_MODELS)
