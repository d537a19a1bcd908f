"""`emokernels demo`: VGG-S converted to XNOR-Net and BWN, measured against float."""

from __future__ import annotations

import copy
import json
import os
import tempfile

import torch
from safetensors.torch import save_file

from . import convert, freeze, model_size_bytes, save_compressed
from .models import vgg_s
from .nn.packed_weight import PackedWeightMixin
from .timing import median_seconds


def _float_simulation(model: torch.nn.Module) -> torch.nn.Module:
    """The converted model with its binary layers on the float (training) path, BN in eval."""
    sim = copy.deepcopy(model).eval()
    for m in sim.modules():
        if isinstance(m, PackedWeightMixin):
            m.train()
    return sim


def _file_size(write) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.safetensors")
        write(path)
        return os.path.getsize(path)


def run_demo(out_dir: str, input_size: int = 224, batches: tuple[int, ...] = (1, 16)) -> dict:
    """Converts a random-init VGG-S, checks packed-vs-float parity, sizes and speed.

    Prints a table and writes ``results.json`` to ``out_dir``; returns the results.
    """
    torch.manual_seed(0)
    base = vgg_s(num_classes=8, input_size=input_size).eval()
    images = torch.randn(32, 3, input_size, input_size)
    dense_file = _file_size(lambda p: save_file(
        {k: v.contiguous() for k, v in base.state_dict().items()}, p))
    rows = [{"method": "float32", "model_bytes": model_size_bytes(base), "file_bytes": dense_file}]
    models = {"float32": base}
    for method in ("xnor", "bwn"):
        model = convert(copy.deepcopy(base), method)
        with torch.no_grad():
            reference = _float_simulation(model)(images)
            packed = model.eval()(images)
        freeze(model)
        models[method] = model
        rows.append({
            "method": method,
            "top1_agreement": float((reference.argmax(1) == packed.argmax(1)).float().mean()),
            "max_abs_diff": float((reference - packed).abs().max()),
            "model_bytes": model_size_bytes(model),
            "file_bytes": _file_size(lambda p, m=model: save_compressed(m, p)),
        })
    for batch in batches:
        x = images[:batch]
        with torch.inference_mode():
            times = {name: median_seconds(lambda m=m, x=x: m(x), repeats=5 if batch == 1 else 3)
                     for name, m in models.items()}
        for row in rows:
            row[f"ms_batch{batch}"] = 1e3 * times[row["method"]]
            row[f"speedup_batch{batch}"] = times["float32"] / times[row["method"]]
    _print(rows, batches, input_size)
    os.makedirs(out_dir, exist_ok=True)
    result = {"input_size": input_size, "threads": torch.get_num_threads(), "rows": rows}
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nwrote {os.path.join(out_dir, 'results.json')}")
    return result


def _print(rows: list[dict], batches, input_size: int) -> None:
    print(f"\nVGG-S {input_size}x{input_size}, random weights, {torch.get_num_threads()} threads")
    head = f"{'method':<8} {'parity':>8} {'weights':>10} {'file':>10}"
    head += "".join(f" {'b' + str(b) + ' ms':>9} {'speedup':>8}" for b in batches)
    print(head)
    for r in rows:
        parity = f"{100 * r['top1_agreement']:.1f}%" if "top1_agreement" in r else "-"
        line = (f"{r['method']:<8} {parity:>8} {r['model_bytes'] / 2**20:>8.2f}MB "
                f"{r['file_bytes'] / 2**20:>8.2f}MB")
        line += "".join(f" {r[f'ms_batch{b}']:>9.1f} {r[f'speedup_batch{b}']:>7.2f}x"
                        for b in batches)
        print(line)
    print("parity: top-1 agreement of the packed model with its float simulation "
          "(max |diff| in results.json)")
