"""Shared parts of the benchmark scripts: environment header, table, JSON output."""

from __future__ import annotations

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

__all__ = ["cpu_name", "environment", "median_seconds", "report"]


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
