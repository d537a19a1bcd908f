"""Shared parts of the benchmark scripts: device choice, timing, environment header, table, JSON.

CPU results go to ``results/<name>.cpu-<cpu model>-<kernel path>.json`` (a VM may name two
generations of a CPU alike: "AMD EPYC" here was both an AVX2 and an AVX-512 core), CUDA results
to ``results/<name>.cuda-<gpu model>.json``, so runs on different machines sit side by side.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import functools
import json
import os
import platform
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

import emokernels
from emokernels.cli import info_lines
from emokernels.roof import cpu_roof
from emokernels.timing import median_seconds

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")

# The shapes every GEMM benchmark reports: a 56x56 conv layer as GEMM, VGG-S fc6 at batch 64
# and at batch 1.
CORE_SHAPES = {
    "S1 conv 56x56": (3136, 256, 2304),
    "S2 fc6 b64": (64, 4096, 18432),
    "S3 fc6 b1": (1, 4096, 18432),
}

# The cuBLAS baselines of the CUDA mode, (tag, dtype); int8 is torch._int_mm on top of these.
CUBLAS_FLOATS = (("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16))
CUBLAS_TAGS = tuple(tag for tag, _ in CUBLAS_FLOATS) + ("int8",)
BASELINE_COLUMNS = [(f"cublas_{tag}_ms", f"{tag} ms", ".3f") for tag in CUBLAS_TAGS]

__all__ = ["BASELINE_COLUMNS", "CORE_SHAPES", "CUBLAS_TAGS", "Suite", "baseline_fields", "bench",
           "cpu_name", "cublas_baselines", "environment", "gemm_main", "is_cuda",
           "median_seconds", "ratio_text", "report", "roof_percent", "roofs", "timed_with_roof"]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def roofs() -> dict:
    """This CPU's ceilings, measured once a run (the GEMM and convolution benchmarks call it
    before timing anything): binary MACs/s of xnor_gemm's inner step without loads, and float32
    FLOP/s of vector FMAs, and MACs/s of bwn_gemm's few-rows table step, all threads."""
    popcount, fma, lookup = cpu_roof("popcount"), cpu_roof("fma"), cpu_roof("lookup")
    return {"popcount_roof_tmacs": popcount.per_second / 1e12, "popcount_roof_loop": popcount.loop,
            "fma_roof_gflops": fma.per_second / 1e9, "fma_roof_loop": fma.loop,
            "lookup_roof_gmacs": lookup.per_second / 1e9, "lookup_roof_loop": lookup.loop}


def roof_percent(per_second: float, kind: str, roof: float | None = None) -> float:
    """``per_second`` (binary MACs for "popcount", float32 FLOPs for "fma", MACs for "lookup")
    as a percentage of ``roof`` (per second, e.g. from :func:`timed_with_roof`), by default
    this CPU's roof of that kind measured at the start of the run."""
    if roof is None:
        measured = roofs()
        roof = {"popcount": measured["popcount_roof_tmacs"] * 1e12,
                "lookup": measured["lookup_roof_gmacs"] * 1e9}.get(
                    kind, measured["fma_roof_gflops"] * 1e9)
    return 100 * per_second / roof


def timed_with_roof(fn: Callable[[], object], kind: str, repeats: int = 10,
                    min_time: float = 0.3) -> tuple[float, float]:
    """Median seconds of one ``fn()`` call on the CPU, and the CPU's roof of ``kind`` (per
    second, see :func:`roof_percent`) measured right before and right after the timing,
    averaged: a shared machine's pace moves from minute to minute (its roofs by up to 2x
    within a run), so each kernel is set against the roof of its own moment."""
    before = cpu_roof(kind, 0.1).per_second
    seconds = median_seconds(fn, repeats=repeats, min_time=min_time)
    return seconds, (before + cpu_roof(kind, 0.1).per_second) / 2


def is_cuda(device: str) -> bool:
    return torch.device(device).type == "cuda"


def bench(fn: Callable[[], object], device: str = "cpu", repeats: int = 10,
          min_time: float = 0.3) -> float:
    """Median seconds of one ``fn()`` call on ``device``.

    CUDA: triton.testing.do_bench, which times each call with CUDA events and flushes the L2
    cache before it (so a GEMV streams its weights from memory, as in a network's forward
    pass), over ~0.5 s of calls after ~0.1 s of warm-up (clocks up, cuBLAS heuristics cached);
    the synchronized timer of emokernels.timing if triton cannot be imported.
    """
    if not is_cuda(device):
        return median_seconds(fn, repeats=repeats, min_time=min_time)
    try:
        from triton.testing import do_bench
    except ImportError:
        return median_seconds(fn, repeats=repeats, min_time=min_time, device=device)
    return do_bench(fn, warmup=100, rep=500, return_mode="median") / 1e3  # in milliseconds


def cublas_baselines(m: int, n: int, k: int, device: str = "cuda") -> dict[str, float | None]:
    """Median seconds of ``x [m, k] @ w [n, k].T`` by tag: torch.matmul in float32 (TF32 off),
    float16 and bfloat16, and torch._int_mm in int8 (None where it rejects the shape)."""
    torch.backends.cuda.matmul.allow_tf32 = False  # "fp32" must mean IEEE float32 on cuBLAS
    times: dict[str, float | None] = {}
    for tag, dtype in CUBLAS_FLOATS:
        x = torch.randn(m, k, device=device, dtype=dtype)
        w = torch.randn(n, k, device=device, dtype=dtype)
        times[tag] = bench(lambda x=x, w=w: torch.matmul(x, w.T), device)
        del x, w  # the 16384^2 float32 operands are 1 GiB each
    times["int8"] = None
    if m > 16 and k % 8 == 0 and n % 8 == 0:  # what torch._int_mm's cuBLASLt path accepts
        x8 = torch.randint(-127, 128, (m, k), device=device, dtype=torch.int8)
        w8 = torch.randint(-127, 128, (n, k), device=device, dtype=torch.int8)
        try:
            torch._int_mm(x8, w8.T)
        except RuntimeError:
            pass  # another limit of this torch build or GPU
        else:
            times["int8"] = bench(lambda: torch._int_mm(x8, w8.T), device)
    return times


def baseline_fields(times: dict[str, float | None]) -> dict[str, float | None]:
    """The ``cublas_<tag>_ms`` fields of a row (the keys of BASELINE_COLUMNS)."""
    return {f"cublas_{tag}_ms": None if t is None else 1e3 * t for tag, t in times.items()}


def ratio_text(value: float | None) -> str:
    """A speedup for a note line: two decimals, "-" where there is none."""
    return "-" if value is None else f"{value:.2f}"


def _cuda_driver_api() -> str | None:
    """The CUDA version the driver supports (cuDriverGetVersion), e.g. "13.0"."""
    try:
        version = ctypes.c_int()
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(version)) != 0:
            return None
    except OSError:
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def _driver_release() -> str | None:
    """The driver's release (e.g. "570.124.06"); torch does not expose it, nvidia-smi does."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out.strip() else None


def environment(device: str = "cpu") -> dict:
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "emokernels": emokernels.__version__,
        "cpu_path": torch.ops.emokernels.cpu_isa(),
        "info": info_lines(),
    }
    if not is_cuda(device):
        env.update(roofs())
    if is_cuda(device):
        props = torch.cuda.get_device_properties(device)
        env.update({
            "device": props.name,
            "cpu": cpu_name(),
            "compute_capability": f"{props.major}.{props.minor}",
            "sm_count": props.multi_processor_count,
            "sm_clock_mhz": props.clock_rate // 1000,  # the peak clock, in kHz from CUDA
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "driver": _driver_release(),
            "cuda_driver_api": _cuda_driver_api(),
            "cuda_runtime": torch.version.cuda,
            "tf32": torch.backends.cuda.matmul.allow_tf32,
        })
    return env


def _header(env: dict) -> str:
    if "compute_capability" in env:
        return (f"# {env['device']} | sm {env['compute_capability']}, {env['sm_count']} SMs | "
                f"driver {env['driver']} (CUDA {env['cuda_driver_api']}), runtime CUDA "
                f"{env['cuda_runtime']} | torch {env['torch']} | emokernels {env['emokernels']} | "
                f"{env['date']}")
    return (f"# {env['device']} | {env['threads']} threads | torch {env['torch']} | "
            f"emokernels {env['emokernels']} ({env['cpu_path']}) | {env['date']}\n"
            f"# roof: popcount {env['popcount_roof_tmacs']:.2f} T binary MAC/s "
            f"({env['popcount_roof_loop']}) | float32 {env['fma_roof_gflops']:.0f} GFLOP/s "
            f"({env['fma_roof_loop']}) | lookup {env['lookup_roof_gmacs']:.0f} G MAC/s "
            f"({env['lookup_roof_loop']})")


def report(name: str, title: str, columns: list[tuple[str, str, str]], rows: list[dict],
           device: str = "cpu", notes: Sequence[str] = ()) -> str:
    """Prints an environment header, a table and notes; writes JSON under benchmarks/results/.

    columns: (key, header, format spec) per column. Returns the JSON path.
    """
    env = environment(device)
    print(f"# {title}")
    print(_header(env))
    widths = [max(len(h), 10) for _, h, _ in columns]
    print("  ".join(f"{h:>{w}}" for (_, h, _), w in zip(columns, widths, strict=True)))
    for row in rows:
        cells = []
        for (key, _, spec), w in zip(columns, widths, strict=True):
            value = row.get(key)
            cells.append(f"{'-' if value is None else format(value, spec):>{w}}")
        print("  ".join(cells))
    for note in notes:
        print(f"# {note}")
    os.makedirs(RESULTS, exist_ok=True)
    tag = env["device"] if is_cuda(device) else f"{env['device']} {env['cpu_path']}"
    slug = re.sub(r"[^a-z0-9]+", "-", tag.lower()).strip("-")
    path = os.path.join(RESULTS, f"{name}.{torch.device(device).type}-{slug}.json")
    result = {"benchmark": name, "environment": env, "rows": rows}
    if notes:
        result["notes"] = list(notes)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"# wrote {os.path.relpath(path)}")
    return path


@dataclass
class Suite:
    """One device's mode of a GEMM benchmark: ``measure(label, m, n, k) -> row`` per shape;
    ``notes(rows)`` gives lines printed under the table (e.g. the targets)."""

    title: str
    shapes: dict[str, tuple[int, int, int]]
    columns: list[tuple[str, str, str]]
    measure: Callable[[str, int, int, int], dict]
    notes: Callable[[list[dict]], list[str]] | None = None


def gemm_main(name: str, doc: str, cpu: Suite, cuda: Suite) -> None:
    """Command line of a GEMM benchmark: ``--device`` picks the suite, ``--quick`` its first
    three shapes."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--quick", action="store_true", help="the first three shapes only")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cpu: against torch on the CPU; cuda: against cuBLAS on the GPU")
    args = parser.parse_args()
    if args.device == "cuda" and not (torch.cuda.is_available()
                                      and torch.ops.emokernels.cuda_compiled()):
        parser.error("--device cuda needs a CUDA device and emokernels built with CUDA")
    suite = cuda if args.device == "cuda" else cpu
    if args.device == "cpu":
        roofs()
    chosen = list(suite.shapes.items())[:3] if args.quick else list(suite.shapes.items())
    rows = [suite.measure(label, *shape) for label, shape in chosen]
    report(name, suite.title, suite.columns, rows, args.device,
           suite.notes(rows) if suite.notes else [])
