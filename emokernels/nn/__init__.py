"""Drop-in binarized layers: train in float with straight-through estimators, run packed."""

from .binary_conv import BinaryConv2d, XnorConv2d
from .binary_input import BinaryInputConv2d, BinaryInputLinear
from .binary_linear import BinaryLinear, XnorLinear
from .ste import BinaryActivation, ste_sign

__all__ = ["BinaryActivation", "BinaryConv2d", "BinaryInputConv2d", "BinaryInputLinear",
           "BinaryLinear", "XnorConv2d", "XnorLinear",
           "ste_sign"]
