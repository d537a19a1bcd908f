"""The paper's architectures."""

from .vgg_s import vgg_s

__all__ = ["vgg_s"]
