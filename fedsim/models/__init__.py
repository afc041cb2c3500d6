"""Backbones; importing this package registers the built-in models."""

from fedsim.models import resnet  # noqa: F401
