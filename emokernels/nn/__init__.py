"""Drop-in compressed layers: binarized ones (train in float with straight-through estimators,
run packed), hashed ones (HashedNets: a few shared weights, the virtual weight generated) and
CP-decomposed convolutions (Lebedev et al.: four small factors instead of the kernel)."""

from .binary_conv import BinaryConv2d, XnorConv2d
from .binary_input import BinaryInputConv2d, BinaryInputLinear
from .binary_linear import BinaryLinear, XnorLinear
from .cp import CPConv2d, cp_rank_for_error
from .hashed import HashedConv2d, HashedLinear
from .ste import BinaryActivation, ste_sign

__all__ = ["BinaryActivation", "BinaryConv2d", "BinaryInputConv2d", "BinaryInputLinear",
           "BinaryLinear", "CPConv2d", "HashedConv2d", "HashedLinear", "XnorConv2d", "XnorLinear",
           "cp_rank_for_error", "ste_sign"]
