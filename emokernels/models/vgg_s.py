"""VGG-S as the paper re-implemented it (BatchNorm instead of LRN)."""

from __future__ import annotations

from torch import nn


def _feature_size(input_size: int) -> int:
    size = (input_size - 7) // 2 + 1          # conv1 7x7/2
    size = -(-(size - 3) // 3) + 1            # pool 3/3, ceil mode
    size = size - 5 + 2 + 1                   # conv2 5x5, pad 1
    size = -(-(size - 2) // 2) + 1            # pool 2/2, ceil mode
    return -(-(size - 3) // 3) + 1            # conv3-5 keep the size; pool 3/3, ceil mode


def vgg_s(num_classes: int = 8, input_size: int = 224, binary_blocks: bool = False,
          binary_inputs: bool = False, fc_width: int = 4096) -> nn.Sequential:
    """VGG-S: conv1 96x7x7/2, pool 3/3, conv2 256x5x5, pool 2/2, conv3-5 512x3x3, pool 3/3,
    fc6 / fc7 ``fc_width``, fc8 ``num_classes``. Input ``[B, 3, input_size, input_size]``.

    At 224x224 the flattened features are 6x6x512 = 18432 and the model has ~97.6 M weights.
    ``binary_blocks`` uses bn-act-conv blocks (the order used for BWN / XNOR-Net).
    ``binary_inputs`` (for layers that binarize their own input: XNOR-Net, binary
    activations) drops the ReLU in front of those layers, where sign(relu(x)) would be +1
    everywhere, keeping bn-conv blocks, BatchNorm after the last pooling and between fc6 and
    fc7 (without dropout there).
    """
    side = _feature_size(input_size)
    if side < 1:
        raise ValueError(f"input_size {input_size} is too small for VGG-S")
    relu = [] if binary_inputs else [nn.ReLU(inplace=True)]

    def block(cin: int, cout: int, kernel: int, padding: int) -> list[nn.Module]:
        conv = nn.Conv2d(cin, cout, kernel, 1, padding)
        if binary_blocks or binary_inputs:
            return [nn.BatchNorm2d(cin), *relu, conv]
        return [conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    layers: list[nn.Module] = [nn.Conv2d(3, 96, 7, 2), nn.BatchNorm2d(96), nn.ReLU(inplace=True),
                               nn.MaxPool2d(3, 3, ceil_mode=True)]
    layers += block(96, 256, 5, 1)
    layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
    layers += block(256, 512, 3, 1) + block(512, 512, 3, 1) + block(512, 512, 3, 1)
    pool = nn.MaxPool2d(3, 3, ceil_mode=True)
    if binary_inputs:
        # Normalized after the pooling: the max of 9 normalized values is nearly always
        # positive, and fc6 would see sign = +1 everywhere.
        layers += [pool, nn.BatchNorm2d(512)]
    elif binary_blocks:
        layers += [nn.BatchNorm2d(512), *relu, pool]
    else:
        layers.append(pool)
    layers += [nn.Flatten(), nn.Linear(512 * side * side, fc_width)]
    if binary_inputs:
        # No dropout in front of fc7's sign: a dropped unit would enter it as sign(0) = +1,
        # half of fc7's inputs replaced by a constant (such nets hardly learn).
        layers += [nn.BatchNorm1d(fc_width), nn.Linear(fc_width, fc_width),
                   nn.BatchNorm1d(fc_width)]
    else:
        layers += [nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(fc_width, fc_width)]
    layers += [nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(fc_width, num_classes)]
    return nn.Sequential(*layers)
