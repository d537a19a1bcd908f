"""VGG-S as the paper re-implemented it (BatchNorm instead of LRN)."""

from __future__ import annotations

from torch import nn


def _conv_block(cin: int, cout: int, kernel: int, stride: int, padding: int,
                binary_block: bool) -> list[nn.Module]:
    conv = nn.Conv2d(cin, cout, kernel, stride, padding)
    if binary_block:
        # bn -> act -> conv, the order binary networks train best with
        return [nn.BatchNorm2d(cin), nn.ReLU(inplace=True), conv]
    return [conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _feature_size(input_size: int) -> int:
    size = (input_size - 7) // 2 + 1          # conv1 7x7/2
    size = -(-(size - 3) // 3) + 1            # pool 3/3, ceil mode
    size = size - 5 + 2 + 1                   # conv2 5x5, pad 1
    size = -(-(size - 2) // 2) + 1            # pool 2/2, ceil mode
    return -(-(size - 3) // 3) + 1            # conv3-5 keep the size; pool 3/3, ceil mode


def vgg_s(num_classes: int = 8, input_size: int = 224, binary_blocks: bool = False,
          fc_width: int = 4096) -> nn.Sequential:
    """VGG-S: conv1 96x7x7/2, pool 3/3, conv2 256x5x5, pool 2/2, conv3-5 512x3x3, pool 3/3,
    fc6 / fc7 ``fc_width``, fc8 ``num_classes``. Input ``[B, 3, input_size, input_size]``.

    At 224x224 the flattened features are 6x6x512 = 18432 and the model has ~97.6 M weights.
    ``binary_blocks`` uses bn-act-conv blocks (the order used for BWN / XNOR-Net).
    """
    side = _feature_size(input_size)
    if side < 1:
        raise ValueError(f"input_size {input_size} is too small for VGG-S")
    layers: list[nn.Module] = []
    layers += _conv_block(3, 96, 7, 2, 0, False)
    layers.append(nn.MaxPool2d(3, 3, ceil_mode=True))
    layers += _conv_block(96, 256, 5, 1, 1, binary_blocks)
    layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
    layers += _conv_block(256, 512, 3, 1, 1, binary_blocks)
    layers += _conv_block(512, 512, 3, 1, 1, binary_blocks)
    layers += _conv_block(512, 512, 3, 1, 1, binary_blocks)
    if binary_blocks:
        layers += [nn.BatchNorm2d(512), nn.ReLU(inplace=True)]
    layers.append(nn.MaxPool2d(3, 3, ceil_mode=True))
    layers += [
        nn.Flatten(),
        nn.Linear(512 * side * side, fc_width), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(fc_width, fc_width), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(fc_width, num_classes),
    ]
    return nn.Sequential(*layers)
