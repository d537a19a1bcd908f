"""``--data`` specifications to train / val / test datasets with torchvision transforms."""

from __future__ import annotations

import os

import torch
from torchvision import datasets, transforms

from .fer2013 import FER2013
from .in_memory import InMemory
from .rafd import RaFD
from .synthetic_faces import SyntheticFaces


def _transform(size: int, train: bool) -> transforms.Compose:
    # The datasets are face crops already: resize, light augmentation when training.
    steps: list = [transforms.Resize((size, size))]
    if train:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)]
    return transforms.Compose(steps)


def _split_indices(n: int, seed: int) -> tuple[list[int], list[int]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    held = max(1, n // 10)
    return order[held:], order[:held]


KINDS = ("synthetic", "rafd", "fer2013", "folder")


def parse_spec(spec: str) -> tuple[str, str]:
    """``(kind, path)`` of a data spec; ValueError for an unknown kind or a missing path."""
    kind, _, path = spec.partition(":")
    if kind not in KINDS:
        raise ValueError(f"unknown data source {kind!r}: use synthetic, rafd:PATH, fer2013:PATH "
                         "or folder:PATH")
    if kind != "synthetic" and not path:
        raise ValueError(f"data spec {spec!r} needs a path: {kind}:PATH")
    return kind, path


def load_splits(spec: str, image_size: int, seed: int = 0, identities: int = 67,
                in_memory: bool = False):
    """``(train, val, test, classes)`` for a data spec; ``in_memory``: each split decoded once
    into tensors (:class:`InMemory`; the train split keeps its random flips).

    ``synthetic`` (built in), ``rafd:PATH`` (identity-disjoint splits), ``fer2013:PATH``
    (Training, with a held-out tenth as val; PublicTest as test) or ``folder:PATH`` (an
    ImageFolder tree with train/ val/ test/ subfolders, or one tree split 80/10/10).
    """
    # The synthetic faces come in mirrored poses and gazes already: a flip would only move
    # contempt's one-sided smirk to the other side.
    flip = parse_spec(spec)[0] != "synthetic"
    eval_t = _transform(image_size, False)
    if not in_memory:
        return _splits(spec, image_size, seed, identities, _transform(image_size, flip), eval_t)
    # The train split is decoded without its flips, which InMemory then draws.
    train, val, test, classes = _splits(spec, image_size, seed, identities, eval_t, eval_t)
    return InMemory(train, flip=flip), InMemory(val), InMemory(test), classes


def _splits(spec: str, image_size: int, seed: int, identities: int, train_t, eval_t):
    kind, path = parse_spec(spec)
    if kind == "synthetic":
        make = lambda split, t: SyntheticFaces(split, identities=identities,  # noqa: E731
                                               image_size=image_size, seed=seed, transform=t)
        return make("train", train_t), make("val", eval_t), make("test", eval_t), \
            SyntheticFaces.classes
    if kind == "rafd":
        make = lambda split, t: RaFD(path, split=split, seed=seed, transform=t)  # noqa: E731
        return make("train", train_t), make("val", eval_t), make("test", eval_t), RaFD.classes
    if kind == "fer2013":
        full_train = FER2013(path, "Training", transform=train_t)
        full_eval = FER2013(path, "Training", transform=eval_t)
        train_idx, val_idx = _split_indices(len(full_train), seed)
        return (torch.utils.data.Subset(full_train, train_idx),
                torch.utils.data.Subset(full_eval, val_idx),
                FER2013(path, "PublicTest", transform=eval_t), FER2013.classes)
    if not os.path.isdir(path):  # kind is "folder", the only one left
        raise FileNotFoundError(f"image folder not found: {path}")
    if all(os.path.isdir(os.path.join(path, s)) for s in ("train", "val", "test")):
        sets = [datasets.ImageFolder(os.path.join(path, s), transform=t)
                for s, t in (("train", train_t), ("val", eval_t), ("test", eval_t))]
        return (*sets, tuple(sets[0].classes))
    full_train = datasets.ImageFolder(path, transform=train_t)
    full_eval = datasets.ImageFolder(path, transform=eval_t)
    order = torch.randperm(len(full_train),
                           generator=torch.Generator().manual_seed(seed)).tolist()
    tenth = max(1, len(order) // 10)
    return (torch.utils.data.Subset(full_train, order[2 * tenth:]),
            torch.utils.data.Subset(full_eval, order[tenth:2 * tenth]),
            torch.utils.data.Subset(full_eval, order[:tenth]), tuple(full_train.classes))
