"""Knowledge distillation from a teacher on unlabelled images (the paper's section 4).

The teacher runs once over the unlabelled set; its logits are cached in a safetensors file
keyed to the teacher's weights and architecture and to the exact input images, so students
(any model, compressed ones included) train from the cache with :func:`kd_loss` through the
ordinary trainer (``TrainConfig(loss=DistillLoss(...))``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .files import atomic_save_file, tensor_digest

MODES = ("softmax", "labels")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float = 1.0, mode: str = "softmax", labels: torch.Tensor | None = None,
            label_weight: float = 0.5) -> torch.Tensor:
    """The distillation loss of a batch, a scalar.

    Args:
        student_logits, teacher_logits: ``[B, C]`` float. A teacher logit of ``-inf`` (a class
            the teacher does not know, see :func:`map_logits`) is a probability of 0.
        temperature: T of ``softmax(logits / T)`` on both sides (``"softmax"`` mode).
        mode: ``"softmax"``: ``T^2 * KL(softmax(t / T) || softmax(s / T))`` averaged over the
            batch (the T^2 keeps gradients comparable across temperatures);
            ``"labels"``: cross-entropy with the teacher's argmax as hard labels.
        labels: ``[B]`` int64 ground truth, where some exists: the loss is then
            ``(1 - label_weight) * distillation + label_weight * cross_entropy(s, labels)``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if student_logits.dim() != 2 or student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits must both be [B, C], got "
                         f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    teacher_logits = teacher_logits.detach()
    if mode == "labels":
        loss = F.cross_entropy(student_logits, teacher_logits.argmax(1))
    else:
        # Probabilities, not log-probabilities, as the target: a probability of 0 then adds 0
        # (kl_div uses xlogy), where a log-target of -inf would give 0 * inf = nan.
        target = F.softmax(teacher_logits / temperature, dim=1)
        loss = F.kl_div(F.log_softmax(student_logits / temperature, dim=1), target,
                        reduction="batchmean") * temperature ** 2
    if labels is None:
        return loss
    if not 0.0 <= label_weight <= 1.0:
        raise ValueError(f"label_weight must be in [0, 1], got {label_weight}")
    return (1 - label_weight) * loss + label_weight * F.cross_entropy(student_logits, labels)


@dataclass(frozen=True)
class DistillLoss:
    """:func:`kd_loss` as a trainer loss (``TrainConfig(loss=...)``) on the targets of
    :class:`TeacherTargets`: teacher logits ``[B, C]``, or ``(teacher logits, labels)``."""

    mode: str = "softmax"
    temperature: float = 1.0
    label_weight: float = 0.5

    def __call__(self, student_logits: torch.Tensor, targets) -> torch.Tensor:
        teacher, labels = targets if isinstance(targets, (tuple, list)) else (targets, None)
        return kd_loss(student_logits, teacher, self.temperature, self.mode, labels,
                       self.label_weight)


def map_logits(logits: torch.Tensor, mapping: tuple[int | None, ...]) -> torch.Tensor:
    """Teacher logits ``[..., C_teacher]`` -> ``[..., len(mapping)]`` over the target classes:
    column j is the teacher's column ``mapping[j]``, or ``-inf`` (probability 0) where it is
    None (see :func:`emokernels.data.emotions.class_mapping`)."""
    known = [j for j, m in enumerate(mapping) if m is not None]
    if any(not 0 <= m < logits.shape[-1] for m in mapping if m is not None):
        raise ValueError(f"mapping {mapping} indexes past the teacher's {logits.shape[-1]} "
                         "classes")
    out = logits.new_full((*logits.shape[:-1], len(mapping)), -torch.inf)
    out[..., known] = logits[..., [mapping[j] for j in known]]
    return out


def _images(batch) -> torch.Tensor:
    # Unlabelled sets yield bare images; a labelled one, (image, label) pairs.
    return batch[0] if isinstance(batch, (tuple, list)) else batch


class TeacherTargets(Dataset):
    """Items ``(image, teacher logits [C])`` for a student, from a dataset of images (bare, or
    ``(image, label)``) and the teacher's cached logits ``[N, C_teacher]`` mapped by
    ``mapping`` (:func:`map_logits`); with ``with_labels``, items are ``(image, (logits,
    label))`` for :class:`DistillLoss` to mix in the ground truth."""

    def __init__(self, images: Dataset, logits: torch.Tensor,
                 mapping: tuple[int | None, ...] | None = None, with_labels: bool = False) -> None:
        if logits.dim() != 2 or logits.shape[0] != len(images):
            raise ValueError(f"expected teacher logits [{len(images)}, C], got "
                             f"{tuple(logits.shape)}")
        self.images, self.with_labels = images, with_labels
        self.logits = map_logits(logits, mapping) if mapping is not None else logits

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        item = self.images[index]
        if self.with_labels:
            image, label = item
            return image, (self.logits[index], label)
        return _images(item), self.logits[index]


_FORMAT_KEY, _FORMAT = "emokernels.teacher-outputs", "1"


def teacher_key(teacher: nn.Module) -> dict[str, str]:
    """What identifies a teacher: sha256 of its weights and buffers (``teacher_weights``) and
    of its printed architecture, preprocessing modules' settings included
    (``teacher_architecture``)."""
    return {"teacher_weights": tensor_digest(teacher.state_dict()),
            "teacher_architecture": hashlib.sha256(str(teacher).encode()).hexdigest()}


def _pass(images: Dataset, batch_size: int, teacher: nn.Module | None = None,
          device: str = "cpu") -> tuple[torch.Tensor | None, dict[str, str]]:
    """One pass over ``images``: ``(the teacher's logits [N, C] float32 on the CPU, or None
    without a teacher; the data key)``."""
    digest, outputs = hashlib.sha256(), []
    if teacher is not None:
        teacher = teacher.to(device).eval()
    with torch.inference_mode():
        for batch in DataLoader(images, batch_size=batch_size, shuffle=False):
            batch = _images(batch).float().contiguous()
            digest.update(batch.numpy().tobytes())
            if teacher is not None:
                outputs.append(teacher(batch.to(device)).float().cpu())
    key = {"images": str(len(images)), "data": digest.hexdigest()}
    return (torch.cat(outputs) if teacher is not None else None), key


def data_key(images: Dataset, batch_size: int = 64) -> dict[str, str]:
    """What identifies the unlabelled data as the teacher sees it: the image count and a sha256
    of every image tensor in order (so the files, their order, resizing and normalization
    all count)."""
    return _pass(images, batch_size)[1]


def _read_cache(path: str) -> tuple[dict[str, str], torch.Tensor]:
    """``(metadata, logits)`` of a cache file, checked whole; ValueError naming the problem."""
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(path)
    except SafetensorError as err:
        raise ValueError(f"teacher cache {path} is not a readable safetensors file: {err}; "
                         "delete it to rebuild it") from err
    if meta.get(_FORMAT_KEY) != _FORMAT:
        raise ValueError(f"{path} is not a teacher-output cache of this version (format "
                         f"{meta.get(_FORMAT_KEY)!r}, expected {_FORMAT!r})")
    if set(tensors) != {"logits"} or meta.get("sha256") != tensor_digest(tensors):
        raise ValueError(f"teacher cache {path} is corrupt: its tensors do not match the sha256 "
                         "recorded when it was written; delete it to rebuild it")
    logits = tensors["logits"]
    if logits.dim() != 2 or logits.dtype != torch.float32 or str(logits.shape[0]) != meta.get(
            "images"):
        raise ValueError(f"teacher cache {path} is corrupt: logits {logits.dtype} "
                         f"{tuple(logits.shape)} for {meta.get('images')} images")
    return meta, logits


def teacher_outputs(teacher: nn.Module, images: Dataset, cache: str | os.PathLike | None = None,
                    batch_size: int = 64, device: str = "cpu", rebuild: bool = True,
                    log=print) -> torch.Tensor:
    """The teacher's logits ``[N, C]`` float32 (CPU) on every image of ``images`` (bare images
    or ``(image, label)`` items, in order), from ``cache`` when it holds them.

    A cache is used only if it is whole (sha256 of its tensors) and was made by the same
    teacher (weights and architecture, :func:`teacher_key`) on the same images
    (:func:`data_key`, which costs one pass over the data). A cache of another teacher or
    other data is rebuilt (``rebuild=True``) or refused with a ValueError naming what
    differs; an unreadable or corrupt one is always refused. The file is written atomically.
    """
    key = teacher_key(teacher)
    if cache is not None and os.path.exists(cache):
        cache = os.fspath(cache)
        meta, logits = _read_cache(cache)
        key.update(data_key(images, batch_size))
        stale = [k for k in key if meta.get(k) != key[k]]
        if not stale:
            return logits
        message = (f"teacher cache {cache} does not fit: its {', '.join(stale)} differ "
                   f"(it holds {meta.get('description', 'no description')})")
        if not rebuild:
            raise ValueError(f"{message}; delete it, or pass rebuild=True")
        log(f"{message}: rebuilding it")
    logits, data = _pass(images, batch_size, teacher, device)
    key.update(data)
    if cache is not None:
        meta = {_FORMAT_KEY: _FORMAT, **key, "sha256": tensor_digest({"logits": logits}),
                "description": f"{type(teacher).__name__} on {len(images)} images "
                               f"{tuple(_images(images[0]).shape)}"}
        atomic_save_file({"logits": logits}, os.fspath(cache), meta)
    return logits
