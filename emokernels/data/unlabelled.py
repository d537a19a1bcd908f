"""Unlabelled face images for distillation: any folder of images, or the synthetic faces with
their labels withheld. Items are bare image tensors, no labels."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from .images import load_rgb
from .sources import _transform
from .synthetic_faces import SyntheticFaces

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class ImageFiles(torch.utils.data.Dataset):
    """Every image file under ``root`` (searched recursively, sorted by path; other files are
    ignored), as ``transform(PIL RGB image)``. FileNotFoundError if there is none."""

    def __init__(self, root: str | os.PathLike, transform: Callable | None = None) -> None:
        if not os.path.isdir(root):
            raise FileNotFoundError(f"image folder not found: {root}")
        self.transform = transform
        self.paths = sorted(os.path.join(folder, name) for folder, _, files in os.walk(root)
                            for name in files if name.lower().endswith(IMAGE_EXTENSIONS))
        if not self.paths:
            raise FileNotFoundError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {root}")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        image = load_rgb(self.paths[index])
        return self.transform(image) if self.transform else image


class WithoutLabels(torch.utils.data.Dataset):
    """A labelled dataset's images alone: item ``i`` is ``dataset[i][0]``."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index][0]


UNLABELLED_KINDS = ("synthetic", "folder")


def load_unlabelled(spec: str, image_size: int, seed: int = 0, identities: int = 40,
                    first_identity: int = 67) -> torch.utils.data.Dataset:
    """The unlabelled set of a spec: ``synthetic`` (``identities`` synthetic identities from
    ``first_identity`` on, past the labelled set's 67, every image; labels withheld) or
    ``folder:PATH`` (every image under PATH). Images ``[3, image_size, image_size]`` float,
    normalized to [-1, 1] as the labelled splits' evaluation images (no augmentation: the
    teacher's cached outputs must be of exactly the images the student sees)."""
    kind, _, path = spec.partition(":")
    transform = _transform(image_size, train=False)
    if kind == "synthetic" and not path:
        return WithoutLabels(SyntheticFaces("all", identities=identities, image_size=image_size,
                                            seed=seed, transform=transform,
                                            first_identity=first_identity))
    if kind == "folder" and path:
        return ImageFiles(path, transform)
    raise ValueError(f"unknown unlabelled data {spec!r}: use synthetic or folder:PATH")
