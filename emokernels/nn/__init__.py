"""Drop-in compressed layers: binarized ones (train in float with straight-through estimators,
run packed) and hashed ones (HashedNets: a few shared weights, the virtual weight generated)."""

from .binary_conv import BinaryConv2d, XnorConv2d
from .binary_input import BinaryInputConv2d, BinaryInputLinear
from .binary_linear import BinaryLinear, XnorLinear
from .hashed import HashedConv2d, HashedLinear
from .ste import BinaryActivation, ste_sign

__all__ = ["BinaryActivation", "BinaryConv2d", "BinaryInputConv2d", "BinaryInputLinear",
           "BinaryLinear", "HashedConv2d", "HashedLinear", "XnorConv2d", "XnorLinear",
           "ste_sign"]
