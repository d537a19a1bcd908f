"""The paper's architectures."""

from .squeezenet import squeezenet1_1
from .vgg_s import vgg_s

__all__ = ["squeezenet1_1", "vgg_s"]
