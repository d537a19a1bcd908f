"""FER2013 from its CSV: columns ``emotion``, ``pixels`` (2304 grey values), ``Usage``."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from .emotions import FER2013_CLASSES

USAGES = ("Training", "PublicTest", "PrivateTest")


class FER2013(torch.utils.data.Dataset):
    """The FER2013 CSV as 48x48 images (grey, returned as RGB PIL images).

    Args:
        csv_path: path of ``fer2013.csv``.
        usage: ``"Training"``, ``"PublicTest"`` or ``"PrivateTest"`` (or a tuple of them).
        transform: applied to the PIL image.

    Items are ``(image, label)`` with labels 0..6 in :attr:`classes` order. A malformed row
    raises naming its line.
    """

    classes = FER2013_CLASSES

    def __init__(self, csv_path: str | os.PathLike, usage: str | tuple[str, ...] = "Training",
                 transform: Callable | None = None) -> None:
        usages = (usage,) if isinstance(usage, str) else tuple(usage)
        for u in usages:
            if u not in USAGES:
                raise ValueError(f"usage must be among {USAGES}, got {u!r}")
        if not os.path.isfile(csv_path):
            raise FileNotFoundError(f"FER2013 CSV not found: {csv_path}")
        self.transform = transform
        pixels, labels = [], []
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            missing = {"emotion", "pixels", "Usage"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{csv_path}: missing columns {sorted(missing)}")
            for line, row in enumerate(reader, start=2):
                if row["Usage"] not in usages:
                    continue
                where = f"{csv_path}:{line}"
                try:
                    label = int(row["emotion"])
                    values = np.array(row["pixels"].split(), dtype=np.uint8)
                except ValueError as err:
                    raise ValueError(f"{where}: {err}") from err
                if not 0 <= label < len(FER2013_CLASSES):
                    raise ValueError(f"{where}: unknown emotion label {label}")
                if values.size != 48 * 48:
                    raise ValueError(f"{where}: expected 2304 pixels, got {values.size}")
                pixels.append(values.reshape(48, 48))
                labels.append(label)
        self.images = np.stack(pixels) if pixels else np.zeros((0, 48, 48), np.uint8)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def targets(self) -> list[int]:
        return list(self.labels)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index]).convert("RGB")
        return (self.transform(image) if self.transform else image), self.labels[index]
