"""Peak resident memory of making VGG-S (224x224, 8 classes, bn-act-conv blocks) and running
one batch-1 inference, float against BWN / XNOR, each case in fresh processes.

Cases: the float model from its state dict (built then loaded, or built on meta and assigned:
the float model at its own size); ``load_compressed`` into a meta-built model (the compressed
model at its size) and into a CPU-built one; ``convert_from_file`` (a meta-built model
converted and frozen while its float state dict streams in); ``convert(freeze=True)`` and
``convert`` then ``freeze`` of a loaded float model.

A case's number is the peak resident set (VmHWM) during the making and the forward, minus
the resident set right after ``import emokernels`` (and the few modules this script needs),
the peak counter reset at that point (``/proc/self/clear_refs``; where that is refused, the
process's lifetime peak ``ru_maxrss``, which includes the import's own peak). Random weights:
memory does not depend on them. The files are written once by the parent process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ARCH = dict(num_classes=8, input_size=224, binary_blocks=True)
TARGET_MB = 64.0


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        return int(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1)) / 1024


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set
        return True
    except OSError:
        return False


def _meta_vgg_s():
    import torch

    from emokernels.models import vgg_s

    with torch.device("meta"):
        return vgg_s(**ARCH)


def _float_model(folder: str, meta: bool):
    from safetensors.torch import load_file

    from emokernels.models import vgg_s

    model = _meta_vgg_s() if meta else vgg_s(**ARCH)
    model.load_state_dict(load_file(os.path.join(folder, "float.safetensors")), assign=meta)
    return model


def _compressed(folder: str, method: str, meta: bool):
    import emokernels as ek
    from emokernels.models import vgg_s

    model = _meta_vgg_s() if meta else vgg_s(**ARCH)
    return ek.load_compressed(model, os.path.join(folder, f"{method}.safetensors"))


def _converted(folder: str, method: str, how: str):
    import emokernels as ek

    if how == "streamed":
        return ek.convert_from_file(_meta_vgg_s(), os.path.join(folder, "float.safetensors"),
                                    method)
    model = _float_model(folder, meta=True)
    if how == "freeze=True":
        return ek.convert(model, method, freeze=True)
    return ek.freeze(ek.convert(model, method))


# (model, how it is made, make(folder), whether it is a compressed model built at its size)
CASES = [
    ("float", "built, state dict", lambda d: _float_model(d, meta=False), False),
    ("float", "meta, assign", lambda d: _float_model(d, meta=True), False),
    ("bwn", "meta, load_compressed", lambda d: _compressed(d, "bwn", meta=True), True),
    ("xnor", "meta, load_compressed", lambda d: _compressed(d, "xnor", meta=True), True),
    ("bwn", "CPU, load_compressed", lambda d: _compressed(d, "bwn", meta=False), False),
    ("xnor", "CPU, load_compressed", lambda d: _compressed(d, "xnor", meta=False), False),
    ("bwn", "convert_from_file", lambda d: _converted(d, "bwn", "streamed"), True),
    ("xnor", "convert_from_file", lambda d: _converted(d, "xnor", "streamed"), True),
    ("xnor", "convert(freeze=True)", lambda d: _converted(d, "xnor", "freeze=True"), False),
    ("xnor", "convert, then freeze", lambda d: _converted(d, "xnor", "then"), False),
]


def run_case(index: int, folder: str) -> dict:
    """Runs ``CASES[index]`` in this (fresh) process; the measurements as a row."""
    import safetensors.torch  # noqa: F401
    import torch

    import emokernels as ek
    import emokernels.models  # noqa: F401

    x = torch.randn(1, 3, ARCH["input_size"], ARCH["input_size"])
    base = _status_mb("VmRSS")
    reset = _reset_peak()

    def peak() -> float:
        return (_status_mb("VmHWM") if reset else _lifetime_peak_mb()) - base

    name, how, make, _ = CASES[index]
    start = time.perf_counter()
    model = make(folder)
    loaded, load_peak = time.perf_counter(), peak()
    with torch.inference_mode():
        out = model.eval()(x)
    done = time.perf_counter()
    assert out.shape == (1, ARCH["num_classes"]) and bool(out.isfinite().all())
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    return {"model": name, "how": how, "load_mb": load_peak, "peak_mb": peak(),
            "after_mb": _status_mb("VmRSS") - base, "model_mb": ek.model_size_bytes(model) / 2**20,
            "load_s": loaded - start, "forward_s": done - loaded,
            "peak_counter": "VmHWM" if reset else "ru_maxrss"}


def _lifetime_peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_files(folder: str) -> dict[str, float]:
    """The float state dict and the frozen BWN / XNOR files; their sizes in MB."""
    import torch
    from safetensors.torch import save_file

    import emokernels as ek
    from emokernels.models import vgg_s

    torch.manual_seed(0)
    model = vgg_s(**ARCH)
    path = os.path.join(folder, "float.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    sizes = {"float": os.path.getsize(path) / 2**20}
    for method in ("bwn", "xnor"):
        path = os.path.join(folder, f"{method}.safetensors")
        ek.save_compressed(ek.convert(vgg_s(**ARCH), method), path)
        sizes[method] = os.path.getsize(path) / 2**20
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)  # a child process's side
    parser.add_argument("--dir", help="folder of the model files (default: a temporary one, "
                        "written first)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="fresh processes per case; the row is the one of highest peak")
    args = parser.parse_args()
    if args.case is not None:
        print(json.dumps(run_case(args.case, args.dir)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or tmp
        sizes = {} if args.dir else write_files(folder)
        rows = []
        for index, (name, how, _, _) in enumerate(CASES):
            runs = [json.loads(subprocess.run(
                [sys.executable, __file__, "--case", str(index), "--dir", folder],
                capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
                for _ in range(args.repeats)]
            row = max(runs, key=lambda r: r["peak_mb"])
            row["min_peak_mb"] = min(r["peak_mb"] for r in runs)
            rows.append(row)
            print(f"# {name}, {how}: {row['min_peak_mb']:.1f} - {row['peak_mb']:.1f} MB",
                  file=sys.stderr)
    report_rows(rows, sizes)


def report_rows(rows: list[dict], sizes: dict[str, float]) -> None:
    from harness import report

    float_peak = rows[1]["peak_mb"]  # the float model at its own size: meta, assign
    for row in rows:
        row["vs_float"] = float_peak / row["peak_mb"]
    targets = [f"{r['model']} {r['how']} {'met' if r['peak_mb'] <= TARGET_MB else 'MISSED'}"
               for r, case in zip(rows, CASES, strict=True) if case[3]]
    notes = [
        "files: " + (", ".join(f"{k} {v:.1f} MB" for k, v in sizes.items()) if sizes
                     else "given with --dir"),
        "MB over the resident set after the imports, in the run of highest peak of "
        "--repeats; load: peak of the load alone, peak: of the load and one forward, least "
        "peak: over the runs (the allocator's reuse of freed blocks varies); x float: the "
        "float model at its size (meta, assign) over the row's peak",
        f"target <= {TARGET_MB:.0f} MB for compressed models made at their size: "
        + ", ".join(targets),
        "beyond the model: the float conv1's 96x109x109 output and BatchNorm's (4.6 MB each), "
        "the library code its first call pages in, and bwn_conv2d's table workspace (BWN)",
        "float meta, assign: load_file maps the file and the forward pages the weights in",
    ]
    report("memory", "VGG-S 224x224: peak memory of making the model and one batch-1 "
           "inference, each in a fresh process",
           [("model", "model", ""), ("how", "how the model is made", ""),
            ("load_mb", "load MB", ".1f"), ("peak_mb", "peak MB", ".1f"),
            ("min_peak_mb", "least peak", ".1f"), ("after_mb", "after MB", ".1f"),
            ("vs_float", "x float", ".1f"), ("model_mb", "weights MB", ".1f"),
            ("load_s", "load s", ".2f"), ("forward_s", "1st fwd s", ".3f")], rows, "cpu", notes)


if __name__ == "__main__":
    main()
