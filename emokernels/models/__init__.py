"""The paper's architectures."""

from .squeezenet import cp_decompose_squeezenet, squeezenet1_1
from .vgg_s import vgg_s

__all__ = ["cp_decompose_squeezenet", "squeezenet1_1", "vgg_s"]
