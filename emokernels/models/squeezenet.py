"""SqueezeNet-1.1 (torchvision's definition)."""

from __future__ import annotations

from torch import nn
from torchvision.models import squeezenet1_1 as _torchvision_squeezenet1_1


def squeezenet1_1(num_classes: int = 8) -> nn.Module:
    """SqueezeNet-1.1 with ``num_classes`` outputs, randomly initialized (726,600 parameters
    for 8 classes). Input ``[B, 3, H, W]``, any ``H, W >= 32``."""
    return _torchvision_squeezenet1_1(weights=None, num_classes=num_classes)
