"""emokernels: binarized, hashed and low-rank CNN layers that are really smaller and faster."""

import torch  # noqa: F401  (the extension links against torch's libraries)

from . import (
    _C,  # noqa: F401  (registers torch.ops.emokernels.*)
    cupy_backend,
    ops,
)
from .convert import convert, freeze
from .fuse import optimize_for_inference
from .nn import (
    BinaryActivation,
    BinaryConv2d,
    BinaryInputConv2d,
    BinaryInputLinear,
    BinaryLinear,
    CPConv2d,
    HashedConv2d,
    HashedLinear,
    XnorConv2d,
    XnorLinear,
    cp_rank_for_error,
)
from .storage import convert_from_file, load_compressed, model_size_bytes, save_compressed

# Built without a CUDA toolkit, on a machine with a GPU and CuPy: the CUDA kernels compiled at
# run time instead (no-op otherwise).
cupy_backend.register()

__version__ = "0.1.0"

__all__ = [
    "BinaryActivation",
    "BinaryConv2d",
    "BinaryInputConv2d",
    "BinaryInputLinear",
    "BinaryLinear",
    "CPConv2d",
    "HashedConv2d",
    "HashedLinear",
    "XnorConv2d",
    "XnorLinear",
    "__version__",
    "convert",
    "convert_from_file",
    "cp_rank_for_error",
    "freeze",
    "load_compressed",
    "model_size_bytes",
    "optimize_for_inference",
    "ops",
    "save_compressed",
]
