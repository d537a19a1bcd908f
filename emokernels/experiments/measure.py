"""What the reproductions measure and write, shared by every table: model size on disk,
epoch and inference time, agreement of packed and float forwards, JSON + CSV outputs."""

from __future__ import annotations

import copy
import csv
import json
import os
import tempfile

import torch
from torch import nn

from .. import freeze, model_size_bytes, save_compressed
from ..registry import layer_type
from ..timing import median_seconds


def file_bytes(model: nn.Module) -> int:
    """Bytes of the model's :func:`save_compressed` file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.safetensors")
        save_compressed(model, path)
        return os.path.getsize(path)


def packed_agreement(model: nn.Module, dataset, count: int = 64) -> float:
    """Top-1 agreement of the model's eval (packed) forward with its float simulation (binary
    layers on their training path, BatchNorm in eval) on ``count`` images."""
    images = torch.stack([dataset[i][0] for i in range(min(count, len(dataset)))])
    simulation = copy.deepcopy(model).eval()
    for m in simulation.modules():
        if layer_type(m) is not None:
            m.train()
    with torch.no_grad():
        return float((simulation(images).argmax(1) == model.eval()(images).argmax(1))
                     .float().mean())


def measure(model: nn.Module, size: int, batch: int, repeats: int, device: str,
            num_classes: int = 8, channels: int = 3) -> dict:
    """Epoch time (forward + SGD update of one mini-batch of ``[batch, channels, size,
    size]``), inference time (one sample, frozen), model size and file size."""
    model = model.to(device)
    x = torch.randn(batch, channels, size, size, device=device)
    labels = torch.randint(0, num_classes, (batch,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), labels).backward()
        optimizer.step()

    model.train()
    epoch = median_seconds(step, repeats=repeats, warmup=1, device=device)
    frozen = freeze(copy.deepcopy(model))
    sample = x[:1]
    with torch.inference_mode():
        inference = median_seconds(lambda: frozen(sample), repeats=max(5, 3 * repeats), warmup=2,
                                   device=device)
    return {"epoch_s": epoch, "inference_s": inference,
            "model_bytes": model_size_bytes(frozen), "file_bytes": file_bytes(frozen)}


def write_json_csv(name: str, rows: list[dict], settings, columns: list[str],
                   out_dir: str) -> None:
    """Writes ``<name>.json`` (the settings and every row in full) and ``<name>.csv`` (the
    ``columns`` of each row) to ``out_dir``."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump({"settings": settings.__dict__, "rows": rows}, f, indent=2)
    with open(os.path.join(out_dir, f"{name}.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
