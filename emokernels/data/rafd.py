"""RaFD from a user's disk: ``Rafd{angle}_{id}_{ethnicity}_{gender}_{emotion}_{gaze}.jpg``."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import numpy as np
import torch

from .emotions import RAFD_CLASSES
from .images import load_rgb

_NAME = re.compile(
    r"^Rafd(\d{3})_(\d+)_([A-Za-z]+)_([A-Za-z]+)_([A-Za-z]+)_([A-Za-z]+)\.(jpe?g|png)$",
    re.IGNORECASE)


class RaFD(torch.utils.data.Dataset):
    """The Radboud Faces Database, read from ``root`` (searched recursively).

    Args:
        root: folder holding the RaFD image files.
        angles: camera angles to keep; the paper's subset is ``(45, 90, 135)``.
        split: ``"train"`` / ``"val"`` / ``"test"`` (identity-disjoint, 70/15/15 % of the
            identities, by ``seed``, at least one each: 3 identities or more) or ``"all"``.
        transform: applied to the PIL image.

    Items are ``(image, label)``; :attr:`classes` is the alphabetical emotion list.
    Files that are not RaFD images are ignored; a RaFD name with an unknown emotion raises.
    """

    classes = RAFD_CLASSES

    def __init__(self, root: str | os.PathLike, angles: tuple[int, ...] = (45, 90, 135),
                 split: str = "all", seed: int = 0, transform: Callable | None = None) -> None:
        if not os.path.isdir(root):
            raise FileNotFoundError(f"RaFD folder not found: {root}")
        if split not in ("train", "val", "test", "all"):
            raise ValueError(f"split must be train, val, test or all; got {split!r}")
        self.transform = transform
        found = []
        for folder, _, files in os.walk(root):
            for name in sorted(files):
                match = _NAME.match(name)
                if not match:
                    continue
                angle, ident, emotion = int(match[1]), int(match[2]), match[5].lower()
                if emotion not in RAFD_CLASSES:
                    raise ValueError(f"{os.path.join(folder, name)}: unknown emotion {emotion!r}")
                if angle in angles:
                    found.append((os.path.join(folder, name), RAFD_CLASSES.index(emotion), ident))
        if not found:
            raise FileNotFoundError(f"no RaFD images with angles {angles} under {root}")
        ids = sorted({ident for _, _, ident in found})
        # Every split needs an identity of its own (each found identity has an image), or
        # it would come out empty.
        if split != "all" and len(ids) < 3:
            raise ValueError(f"found {len(ids)} RaFD identities under {root}; split={split!r} "
                             "needs at least 3 (one each for train, val and test); "
                             "split='all' works with any number")
        order = np.random.default_rng(seed).permutation(len(ids))
        n_held = max(1, round(0.15 * len(ids)))
        parts = {"test": order[:n_held], "val": order[n_held:2 * n_held],
                 "train": order[2 * n_held:], "all": order}
        keep = {ids[i] for i in parts[split]}
        self.samples = sorted((path, label) for path, label, ident in found if ident in keep)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        image = load_rgb(path)
        return (self.transform(image) if self.transform else image), label
