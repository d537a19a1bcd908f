"""What the reproductions measure and write, shared by every table: model size in memory and
on disk, training-step and inference times taken alternately with the baseline's, agreement
of packed and float forwards, JSON + CSV outputs."""

from __future__ import annotations

import copy
import csv
import functools
import json
import os
import statistics
import tempfile
from collections.abc import Callable

import torch
from torch import nn

from .. import freeze, model_size_bytes, save_compressed
from ..registry import layer_type
from ..timing import compare_seconds


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


class Workload:
    """What the tables time of a full-size model: one training step (forward, backward and an
    SGD update of a ``[batch, channels, size, size]`` mini-batch) and one frozen inference of
    a single sample."""

    def __init__(self, model: nn.Module, size: int, batch: int, device: str,
                 num_classes: int = 8, channels: int = 3) -> None:
        self.model = model.to(device).train()
        self.x = torch.randn(batch, channels, size, size, device=device)
        self.labels = torch.randint(0, num_classes, (batch,), device=device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
        self.sample = self.x[:1]

    @functools.cached_property
    def frozen(self) -> nn.Module:
        """A frozen copy, made on first use (the training-step timing needs none)."""
        return freeze(copy.deepcopy(self.model))

    def train_step(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(self.model(self.x), self.labels).backward()
        self.optimizer.step()

    def infer(self) -> None:
        with torch.inference_mode():
            self.frozen(self.sample)

    def sizes(self) -> dict:
        """Bytes of the frozen model's weights and of its :func:`save_compressed` file."""
        return {"model_bytes": model_size_bytes(self.frozen),
                "file_bytes": file_bytes(self.frozen)}


def compare_speed(model: Workload, baseline: Workload, rounds: int, device: str) -> dict:
    """Training-step and inference times of ``model`` and ``baseline``, taken alternately
    (:func:`compare_seconds`; ``rounds`` training steps each, twice as many inferences):
    medians, speedups (the baseline's time over the model's, median of the per-round ratios),
    their spread (lowest, highest) and whether it excludes 1."""
    row = {}
    for name, runs, n in (("epoch", (model.train_step, baseline.train_step), rounds),
                          ("inference", (model.infer, baseline.infer), 2 * rounds)):
        comparison = compare_seconds(runs[1], runs[0], rounds=n, warmup=1, device=device)
        row.update({f"{name}_s": statistics.median(comparison.candidate_s),
                    f"baseline_{name}_s": statistics.median(comparison.baseline_s),
                    f"{name}_speedup": comparison.speedup,
                    f"{name}_speedup_spread": list(comparison.spread),
                    f"{name}_speedup_decided": comparison.decided})
    return row


def measure_rows(baselines: dict[str, str], build: Callable[[str], nn.Module], size: int,
                 batch: int, rounds: int, device: str, num_classes: int = 8,
                 done: Callable[[str, dict], None] | None = None) -> dict[str, dict]:
    """Sizes (:meth:`Workload.sizes`, ``size_ratio``) and speed fields (:func:`compare_speed`)
    of every key of ``baselines`` (key -> the key of its baseline; a baseline maps to itself),
    its full-size model from ``build(key)``.

    Each row is timed alternately with its baseline, whose model is built once; a baseline
    gets the median of its times over those comparisons and speedup 1 (one with no rows
    against it is timed against itself, which shows the machine's noise). ``done(key,
    fields)`` follows each row.
    """
    def workload(key: str) -> Workload:
        return Workload(build(key), size, batch, device, num_classes)

    rows: dict[str, dict] = {}
    references = {base: workload(base) for base in dict.fromkeys(baselines.values())}
    for base, reference in references.items():
        rows[base] = reference.sizes()
    for key, base in baselines.items():
        if key == base:
            continue
        candidate = workload(key)
        rows[key] = {**candidate.sizes(), **compare_speed(candidate, references[base], rounds,
                                                          device)}
        if done is not None:
            done(key, rows[key])
    for base, reference in references.items():
        seen = [rows[k] for k, b in baselines.items() if b == base and k != base]
        if seen:  # the median of its times over the comparisons
            for name in ("epoch", "inference"):
                rows[base][f"{name}_s"] = statistics.median(r[f"baseline_{name}_s"]
                                                            for r in seen)
                rows[base][f"{name}_speedup"] = 1.0
        else:
            rows[base].update(compare_speed(reference, workload(base), rounds, device))
            if done is not None:
                done(base, rows[base])
    for key, base in baselines.items():
        rows[key]["size_ratio"] = rows[key]["model_bytes"] / rows[base]["model_bytes"]
    return rows


def speedup_text(row: dict, name: str) -> str:
    """``1.52x [1.41-1.60]``, or with ``?`` where the spread contains 1 (the rounds disagree on
    which is faster), or ``-`` where nothing was measured."""
    if f"{name}_speedup" not in row:
        return "-"
    spread = row.get(f"{name}_speedup_spread")
    if spread is None:  # the baseline itself
        return f"{row[f'{name}_speedup']:.2f}x"
    flag = "" if row[f"{name}_speedup_decided"] else "?"
    return f"{row[f'{name}_speedup']:.2f}x{flag} [{spread[0]:.2f}-{spread[1]:.2f}]"


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
