"""Backbones; importing this package registers the built-in models."""

from fedsim.models import repghost, repopt_vgg, resnet  # noqa: F401
from fedsim.models import mlp  # noqa: F401
