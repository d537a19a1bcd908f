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


def _parse_row(row: dict[str, str], where: str) -> tuple[int, np.ndarray]:
    """``(label, 2304 uint8 pixels)`` of a CSV row; ValueError naming ``where`` if malformed."""
    try:
        label = int(row["emotion"])
        # int64 first: a uint8 cast would wrap or overflow on values out of 0..255
        values = np.array(row["pixels"].split(), dtype=np.int64)
    except (ValueError, OverflowError) as err:
        raise ValueError(f"{where}: {err}") from err
    if not 0 <= label < len(FER2013_CLASSES):
        raise ValueError(f"{where}: unknown emotion label {label}")
    if values.size != 48 * 48:
        raise ValueError(f"{where}: expected 2304 pixels, got {values.size}")
    if values.min() < 0 or values.max() > 255:
        raise ValueError(f"{where}: pixel values must be in 0..255, got {values.min()}.."
                         f"{values.max()}")
    return label, values.astype(np.uint8)


class FER2013(torch.utils.data.Dataset):
    """The FER2013 CSV as 48x48 images (grey, returned as RGB PIL images).

    Args:
        csv_path: path of ``fer2013.csv``.
        usage: ``"Training"``, ``"PublicTest"`` or ``"PrivateTest"`` (or a tuple of them).
        transform: applied to the PIL image.

    Items are ``(image, label)`` with labels 0..6 in :attr:`classes` order. A malformed row
    (an unknown Usage included) raises ValueError naming its line, as does a file with no
    rows of the requested usage.
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
            for row in reader:
                # line_num: the physical line the row ends on, right across skipped blank lines
                where = f"{csv_path}:{reader.line_num}"
                if None in row or None in row.values():  # DictReader's too many / too few
                    raise ValueError(f"{where}: expected {len(reader.fieldnames)} fields")
                # Exact match: a misspelt Usage must not drop the row from every split unseen.
                if row["Usage"] not in USAGES:
                    raise ValueError(f"{where}: Usage {row['Usage']!r} is not one of {USAGES}")
                if row["Usage"] not in usages:
                    continue
                label, values = _parse_row(row, where)
                pixels.append(values.reshape(48, 48))
                labels.append(label)
        if not labels:
            raise ValueError(f"{csv_path}: no rows with Usage in {usages}")
        self.images = np.stack(pixels)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def targets(self) -> list[int]:
        return list(self.labels)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index]).convert("RGB")
        return (self.transform(image) if self.transform else image), self.labels[index]
