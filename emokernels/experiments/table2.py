"""``emokernels reproduce table2``: every method of the paper's Table 2, trained and measured
on our kernels: test accuracy, model size, epoch time and inference time."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .. import HashedLinear, convert
from ..data import load_splits
from ..models import cp_decompose_squeezenet, squeezenet1_1, vgg_s
from ..nn.cp import DEFAULT_N_ITER_MAX
from .measure import measure, packed_agreement, pyplot, write_json_csv
from .paper import PAPER_TABLE2
from .trainer import TrainConfig, evaluate, init_distributed_from_env, train


@dataclass(frozen=True)
class Method:
    key: str
    title: str
    baseline: str  # key of the row whose size and timings it is compared with
    build: Callable[[int, int, int], nn.Module] | None  # (classes, input size, fc width)
    missing: str = ""  # why it is not available yet
    # Given, the method compresses the baseline's trained model instead of training from
    # scratch: (a copy of it, settings) -> (the model to fine-tune, notes for the row); build
    # then gives the architecture whose size and timings are measured.
    compress: Callable[[nn.Module, Settings], tuple[nn.Module, dict]] | None = None


def _vgg(method: str | None) -> Callable[[int, int, int], nn.Module]:
    def build(num_classes: int, input_size: int, fc_width: int) -> nn.Module:
        model = vgg_s(num_classes, input_size, binary_blocks=method is not None,
                      binary_inputs=method in ("xnor", "binary-activations"), fc_width=fc_width)
        return convert(model, method) if method else model

    return build


def _hashed_vgg(block: int) -> Callable[[int, int, int], nn.Module]:
    """VGG-S with its fully connected layers hashed at compression 1/8 with bias hashing: the
    paper's HashedNets setting (its third-party code hashed the linear layers; that leaves
    18.3% of VGG-S's weights, the paper's "81.64% fewer"); block > 1: block hashing. The hashed
    layers start from a fresh HashedNets initialization, as the paper trained from scratch
    (fitting buckets to random float weights would shrink them by averaging)."""

    def build(num_classes: int, input_size: int, fc_width: int) -> nn.Module:
        model = vgg_s(num_classes, input_size, fc_width=fc_width)
        linear = [i for i, m in enumerate(model) if type(m) is nn.Linear]
        for n, i in enumerate(linear):
            # One hash per layer; seeds two apart, as each layer's bias hash uses seed + 1.
            model[i] = HashedLinear.shaped_like(model[i], compression=1 / 8, seed=2 * n,
                                                block=block, hash_bias=True)
        return model

    return build


# The paper's CP SqueezeNet: fire8's and fire9's 3x3 convolutions at rank 192.
_CP_RANK = 192


def _cp_squeezenet(num_classes: int, input_size: int, fc_width: int) -> nn.Module:
    """The CP SqueezeNet's architecture (fresh factors: no ALS, which sizes and timings do not
    need)."""
    return cp_decompose_squeezenet(squeezenet1_1(num_classes), _CP_RANK, shells_only=True)[0]


def _cp_compress(model: nn.Module, settings: Settings) -> tuple[nn.Module, dict]:
    """CP-ALS of the trained SqueezeNet's two layers; the fits' relative errors for the row."""
    model, errors = cp_decompose_squeezenet(model, _CP_RANK, n_iter_max=settings.cp_n_iter_max)
    return model, {"decomposition_error": errors}


METHODS = [
    Method("vgg_s", "VGG-S baseline", "vgg_s", _vgg(None)),
    Method("hashed", "HashedNet VGG-S (1/8)", "vgg_s", _hashed_vgg(1)),
    Method("hashed_block16", "HashedNet VGG-S (1/8, block 16)", "vgg_s", _hashed_vgg(16)),
    Method("bwn", "BWN VGG-S", "vgg_s", _vgg("bwn")),
    Method("xnor", "XNOR-Net VGG-S", "vgg_s", _vgg("xnor")),
    Method("binary_activations", "Binary activations VGG-S", "vgg_s",
           _vgg("binary-activations")),
    Method("squeezenet", "SqueezeNet-1.1", "squeezenet",
           lambda classes, size, fc_width: squeezenet1_1(classes)),
    Method("cp_squeezenet", "CP SqueezeNet-1.1 (rank 192)", "squeezenet", _cp_squeezenet,
           compress=_cp_compress),
]


@dataclass
class Settings:
    data: str = "synthetic"
    device: str = "cpu"
    train_size: int = 224
    fc_width: int = 4096  # of VGG-S while training
    measure_fc_width: int = 4096  # of VGG-S whose size and timings are measured
    epochs: int = 100
    lr: float = 1e-3
    batch_size: int = 20
    steps_per_epoch: int | None = None
    measure_size: int = 224
    timing_repeats: int = 5
    seed: int = 0
    identities: int = 67  # of the synthetic data
    method_lr: dict[str, float] = field(default_factory=dict)  # per-method learning rates
    # Rows that compress a trained baseline (CP SqueezeNet) fine-tune it for this many epochs
    # (at most ``epochs``).
    finetune_epochs: int = 5
    cp_n_iter_max: int = DEFAULT_N_ITER_MAX  # ALS sweeps of the CP fits

    @classmethod
    def quick(cls, **overrides) -> Settings:
        """Scaled-down training (64x64 images, VGG-S fc 1024, a few epochs, lr 1e-2, one
        fine-tuning epoch); sizes and timings are still measured on the full-size 224x224
        models."""
        # SqueezeNet's last ReLU dies at 1e-2 (all logits 0), and so do the hashed nets (each
        # bucket sums the gradients of ~8 virtual weights): they keep the paper's 1e-3, and so
        # does the fine-tuning of the CP SqueezeNet.
        base = dict(train_size=64, fc_width=1024, epochs=6, lr=1e-2, timing_repeats=3,
                    finetune_epochs=1,
                    method_lr={"squeezenet": 1e-3, "hashed": 1e-3, "hashed_block16": 1e-3,
                               "cp_squeezenet": 1e-3})
        return cls(**{**base, **overrides})


def run_table2(settings: Settings, out_dir: str, log=print) -> list[dict]:
    """Trains and measures every available method; writes JSON, CSV and a plot to out_dir.

    Under torchrun every process trains its share; process 0 measures and writes the outputs.
    """
    if init_distributed_from_env(settings.device):
        rank = torch.distributed.get_rank()
        if settings.device == "cuda":
            settings = replace(settings, device=f"cuda:{os.environ.get('LOCAL_RANK', rank)}")
        if rank != 0:
            log = lambda _: None  # noqa: E731
    else:
        rank = 0
    train_set, val_set, test_set, classes = load_splits(settings.data, settings.train_size,
                                                        settings.seed, settings.identities)
    rows = []
    trained = {}  # the trained models that later rows compress
    compressed = {m.baseline for m in METHODS if m.compress is not None}
    for method in METHODS:
        paper_acc, paper_cost = PAPER_TABLE2[method.key]
        row = {"method": method.key, "title": method.title, "paper_accuracy": paper_acc,
               "paper_cost": paper_cost}
        if method.build is None:
            row["status"] = f"not available ({method.missing} not implemented yet)"
            rows.append(row)
            log(f"{method.title}: {row['status']}")
            continue
        torch.manual_seed(settings.seed)
        epochs = settings.epochs
        if method.compress is None:
            log(f"{method.title}: training on {settings.data} at {settings.train_size}px")
            model = method.build(len(classes), settings.train_size, settings.fc_width)
        else:  # METHODS lists the baseline first
            log(f"{method.title}: compressing the trained {method.baseline}, then fine-tuning")
            model, notes = method.compress(copy.deepcopy(trained[method.baseline]), settings)
            row.update(notes, compressed_accuracy=100 * evaluate(
                model.to(settings.device), test_set, device=settings.device))
            epochs = min(settings.epochs, settings.finetune_epochs)
        config = TrainConfig(epochs=epochs,
                             lr=settings.method_lr.get(method.key, settings.lr),
                             batch_size=settings.batch_size, seed=settings.seed,
                             device=settings.device, steps_per_epoch=settings.steps_per_epoch,
                             checkpoint=os.path.join(out_dir, f"{method.key}.ckpt.safetensors"))
        os.makedirs(out_dir, exist_ok=True)
        result = train(model, train_set, val_set, config)
        row.update(status="ok", test_accuracy=100 * evaluate(model, test_set,
                                                             device=settings.device),
                   best_val_accuracy=100 * result.best_val_accuracy, history=result.history,
                   packed_agreement=100 * packed_agreement(model.cpu(), test_set))
        if method.key in compressed:
            trained[method.key] = model
        if rank == 0:
            full = method.build(len(classes), settings.measure_size, settings.measure_fc_width)
            row.update(measure(full, settings.measure_size, settings.batch_size,
                               settings.timing_repeats, settings.device))
        rows.append(row)
    if rank != 0:
        return rows
    by_key = {r["method"]: r for r in rows}
    for method, row in zip(METHODS, rows, strict=True):
        base = by_key[method.baseline]
        if row.get("status") == "ok" and base.get("status") == "ok":
            row["size_ratio"] = row["model_bytes"] / base["model_bytes"]
            row["epoch_speedup"] = base["epoch_s"] / row["epoch_s"]
            row["inference_speedup"] = base["inference_s"] / row["inference_s"]
    write_outputs(rows, settings, out_dir)
    log(format_table(rows))
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows as a text table beside the paper's accuracies."""
    head = (f"{'method':<32} {'acc %':>6} {'paper %':>8} {'size MB':>8} {'x base':>7} "
            f"{'epoch s':>8} {'speedup':>8} {'infer ms':>9} {'speedup':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        # Rows beyond the paper (block hashing) have no paper accuracy.
        paper = "-" if r["paper_accuracy"] is None else f"{r['paper_accuracy']:.2f}"
        if r.get("status") != "ok":
            lines.append(f"{r['title']:<32} {'-':>6} {paper:>8}   {r['status']}")
            continue
        lines.append(
            f"{r['title']:<32} {r['test_accuracy']:>6.2f} {paper:>8} "
            f"{r['model_bytes'] / 2**20:>8.2f} {r['size_ratio']:>7.3f} {r['epoch_s']:>8.3f} "
            f"{r['epoch_speedup']:>7.2f}x {1e3 * r['inference_s']:>9.2f} "
            f"{r['inference_speedup']:>7.2f}x")
    lines.append("size: bytes of the frozen model's weights; x base: ratio to the method's "
                 "baseline (VGG-S or SqueezeNet); paper %: the paper's accuracy on RaFD")
    return "\n".join(lines)


def write_outputs(rows: list[dict], settings: Settings, out_dir: str) -> None:
    """Writes table2.json (everything), table2.csv (the table) and table2.png (the plot)."""
    columns = ["method", "title", "status", "test_accuracy", "paper_accuracy",
               "compressed_accuracy", "packed_agreement", "model_bytes",
               "file_bytes", "size_ratio", "epoch_s", "epoch_speedup", "inference_s",
               "inference_speedup", "paper_cost"]
    write_json_csv("table2", rows, settings, columns, out_dir)
    _plot(rows, os.path.join(out_dir, "table2.png"))


def _plot(rows: list[dict], path: str) -> None:
    plt = pyplot()
    done = [r for r in rows if r.get("status") == "ok"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in done:
        left.scatter(r["model_bytes"] / 2**20, r["test_accuracy"])
        left.annotate(r["title"], (r["model_bytes"] / 2**20, r["test_accuracy"]), fontsize=7)
    left.set_xscale("log")
    left.set_xlabel("model size (MB, log)")
    left.set_ylabel("test accuracy (%)")
    left.set_title("size vs accuracy")
    names = [r["title"] for r in done]
    pos = range(len(done))
    right.barh([p - 0.2 for p in pos], [r["inference_speedup"] for r in done], height=0.4,
               label="inference")
    right.barh([p + 0.2 for p in pos], [r["epoch_speedup"] for r in done], height=0.4,
               label="epoch")
    right.set_yticks(list(pos), names, fontsize=7)
    right.axvline(1.0, color="k", lw=0.8)
    right.set_xlabel("speedup over its baseline")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
