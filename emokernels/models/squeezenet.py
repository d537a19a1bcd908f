"""SqueezeNet-1.1 (torchvision's definition), and the paper's CP-decomposed variant."""

from __future__ import annotations

from torch import nn
from torchvision.models import squeezenet1_1 as _torchvision_squeezenet1_1

from ..convert import _set_submodule
from ..nn.cp import DEFAULT_N_ITER_MAX, CPConv2d

# The last two 3x3 convolutions, fire8's and fire9's expand3x3 (64 -> 256 channels): the layers
# the paper decomposed at rank 192.
CP_LAYERS = ("features.11.expand3x3", "features.12.expand3x3")


def squeezenet1_1(num_classes: int = 8) -> nn.Module:
    """SqueezeNet-1.1 with ``num_classes`` outputs, randomly initialized (726,600 parameters
    for 8 classes). Input ``[B, 3, H, W]``, any ``H, W >= 32``."""
    return _torchvision_squeezenet1_1(weights=None, num_classes=num_classes)


def cp_decompose_squeezenet(model: nn.Module, rank: int = 192, *,
                            n_iter_max: int = DEFAULT_N_ITER_MAX, seed: int = 0,
                            shells_only: bool = False) -> tuple[nn.Module, dict[str, float]]:
    """Replaces the :data:`CP_LAYERS` of a SqueezeNet-1.1 by their rank-``rank`` CP fits
    (:meth:`CPConv2d.from_conv`), in place: the paper's CP SqueezeNet (147,456 -> 62,592
    weights per layer at rank 192: 23.4 % fewer of the 726,600 parameters for 8 classes).

    Args:
        model: a :func:`squeezenet1_1` (trained, for a useful fit), float32 or any float dtype.
        rank, n_iter_max, seed: of the fits.
        shells_only: freshly initialized CP layers instead of fits (the architecture only,
            e.g. to measure its size and speed); no ALS runs.

    Returns:
        ``(model, errors)``: ``errors[name]`` is the relative error ``||W - W_cp|| / ||W||``
        of each layer's fit (empty with ``shells_only``).
    """
    errors = {}
    for name in CP_LAYERS:
        conv = model.get_submodule(name)
        if type(conv) is not nn.Conv2d:
            raise ValueError(f"{name} is {type(conv).__name__}, not the nn.Conv2d of a "
                             "SqueezeNet-1.1 (already decomposed?)")
        if shells_only:
            layer = CPConv2d.shaped_like(conv, rank)
        else:
            layer = CPConv2d.from_conv(conv, rank, n_iter_max=n_iter_max, seed=seed)
            errors[name] = layer.decomposition_error
        _set_submodule(model, name, layer.train(conv.training))
    return model, errors
