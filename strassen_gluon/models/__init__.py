"""Model registry: build any model of the library by name, as gluoncv's get_model does.

Each model module registers its constructors with @register; importing it here fills the table.
"""
from .registry import get_model, list_models, register
from . import resnet_cifar, vgg_cifar  # noqa: F401  (they register their models)
from . import resnet_imagenet  # noqa: F401  (registers resnet18, st_resnet18)
from . import charlm  # noqa: F401  (registers charlm, st_charlm)

__all__ = ['get_model', 'list_models', 'register']
