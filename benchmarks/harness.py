"""Shared parts of the benchmark scripts: environment header, table, JSON output."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re

import torch

import emokernels
from emokernels.cli import info_lines
from emokernels.timing import median_seconds

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# The shapes every GEMM benchmark reports: a 56x56 conv layer as GEMM, VGG-S fc6 at batch 64
# and at batch 1.
CORE_SHAPES = {
    "S1 conv 56x56": (3136, 256, 2304),
    "S2 fc6 b64": (64, 4096, 18432),
    "S3 fc6 b1": (1, 4096, 18432),
}

__all__ = ["CORE_SHAPES", "cpu_name", "environment", "gemm_main", "median_seconds", "report"]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "emokernels": emokernels.__version__,
        "cpu_path": torch.ops.emokernels.cpu_isa(),
        "info": info_lines(),
    }


def report(name: str, title: str, columns: list[tuple[str, str, str]], rows: list[dict]) -> str:
    """Prints an environment header and a table; writes JSON under benchmarks/results/.

    columns: (key, header, format spec) per column. Returns the JSON path.
    """
    env = environment()
    print(f"# {title}")
    print(f"# {env['device']} | {env['threads']} threads | torch {env['torch']} | "
          f"emokernels {env['emokernels']} ({env['cpu_path']}) | {env['date']}")
    widths = [max(len(h), 10) for _, h, _ in columns]
    print("  ".join(f"{h:>{w}}" for (_, h, _), w in zip(columns, widths, strict=True)))
    for row in rows:
        cells = []
        for (key, _, spec), w in zip(columns, widths, strict=True):
            value = row.get(key)
            cells.append(f"{'-' if value is None else format(value, spec):>{w}}")
        print("  ".join(cells))
    os.makedirs(RESULTS, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", env["device"].lower()).strip("-")
    path = os.path.join(RESULTS, f"{name}.cpu-{slug}.json")
    with open(path, "w") as f:
        json.dump({"benchmark": name, "environment": env, "rows": rows}, f, indent=2)
    print(f"# wrote {os.path.relpath(path)}")
    return path


def gemm_main(name: str, title: str, doc: str, shapes: dict[str, tuple[int, int, int]],
              columns: list[tuple[str, str, str]], measure) -> None:
    """Command line of a GEMM benchmark: ``measure(label, m, n, k) -> row`` per shape."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--quick", action="store_true", help="the first three shapes only")
    args = parser.parse_args()
    chosen = list(shapes.items())[:3] if args.quick else list(shapes.items())
    report(name, title, columns, [measure(label, *shape) for label, shape in chosen])
