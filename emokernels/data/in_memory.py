"""A dataset decoded once into one tensor, for training runs that go over it many times."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class InMemory(Dataset):
    """Every ``(image, label)`` of ``dataset`` (images as same-shaped float tensors, labels as
    ints) stacked once: ``images [N, C, H, W]`` float32, ``labels [N]`` int64.

    With ``flip``, an item is mirrored left-right with probability 1/2, drawn from torch's
    global generator as torchvision's RandomHorizontalFlip draws it (so a seeded run stays
    reproducible). The tensors take ``4 * N * C * H * W`` bytes: meant for small images.
    """

    def __init__(self, dataset: Dataset, flip: bool = False) -> None:
        if len(dataset) == 0:
            raise ValueError("cannot hold an empty dataset in memory")
        items = [dataset[i] for i in range(len(dataset))]
        shapes = {tuple(image.shape) for image, _ in items}
        if len(shapes) != 1:
            raise ValueError(f"images of one in-memory dataset must share a shape, got {shapes}")
        self.images = torch.stack([image for image, _ in items]).float()
        self.labels = torch.tensor([int(label) for _, label in items], dtype=torch.int64)
        self.flip = flip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.flip and torch.rand(1) < 0.5:
            image = image.flip(-1)
        return image, int(self.labels[index])
