"""emokernels: binarized, hashed and low-rank CNN layers that are really smaller and faster."""

import torch  # noqa: F401  (the extension links against torch's libraries)

from . import _C  # noqa: F401  (registers torch.ops.emokernels.*)
from . import ops

__version__ = "0.1.0"

__all__ = ["ops", "__version__"]
