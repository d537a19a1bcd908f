"""``emokernels reproduce table2``: every method of the paper's Table 2, trained and measured
on our kernels: test accuracy, model size, epoch time and inference time."""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .. import HashedLinear, convert
from ..data import load_splits
from ..models import cp_decompose_squeezenet, squeezenet1_1, vgg_s
from ..nn.cp import DEFAULT_N_ITER_MAX
from ..timing import median_seconds
from .measure import (
    Workload,
    measure_rows,
    packed_agreement,
    pyplot,
    speedup_text,
    write_json_csv,
)
from .paper import PAPER_TABLE2
from .progress import Progress, duration
from .trainer import TrainConfig, evaluate, init_distributed_from_env, train


@dataclass(frozen=True)
class Method:
    key: str
    title: str
    baseline: str  # key of the row whose size and timings it is compared with
    build: Callable[[int, int, int], nn.Module]  # (classes, input size, fc width)
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
    # The paper's recipe by default (SGD, constant lr); see TrainConfig for the others.
    optimizer: str = "sgd"
    schedule: str = "constant"
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    clip_grad_norm: float | None = None
    channels_last: bool = False
    in_memory: bool = False  # decode each split once into tensors
    steps_per_epoch: int | None = None
    measure_size: int = 224
    timing_batch: int = 20  # of the timed training steps
    timing_repeats: int = 5  # rounds of alternate timing against the baseline
    seed: int = 0
    identities: int = 67  # of the synthetic data
    methods: tuple[str, ...] | None = None  # the rows to run, in METHODS' order; None: all
    method_lr: dict[str, float] = field(default_factory=dict)  # per-method learning rates
    method_epochs: dict[str, int] = field(default_factory=dict)  # per-method epochs
    # Rows that compress a trained baseline (CP SqueezeNet) fine-tune it for this many epochs
    # (at most ``epochs``).
    finetune_epochs: int = 5
    cp_n_iter_max: int = DEFAULT_N_ITER_MAX  # ALS sweeps of the CP fits
    # A run whose loss stays at ln(classes) with chance accuracy ("dead") is retrained from
    # the next seed, up to this many times.
    restarts: int = 1

    @classmethod
    def quick(cls, **overrides) -> Settings:
        """The seven rows of the paper in about a quarter of an hour on two CPU cores: 48x48
        images held in memory, VGG-S fc 512, AdamW with warm-up and cosine decay, label
        smoothing, gradient clipping, channels-last, epochs per method; no block-hashing row.
        Sizes and timings are still measured on the full-size 224x224 models (training steps
        of 4 images, alternating with the baseline)."""
        base = dict(train_size=48, fc_width=512, batch_size=64, optimizer="adamw", lr=3e-3,
                    schedule="cosine", weight_decay=5e-4, label_smoothing=0.1,
                    clip_grad_norm=5.0, channels_last=True, in_memory=True, epochs=7,
                    method_epochs={"hashed": 4, "xnor": 2, "binary_activations": 2,
                                   "squeezenet": 10},
                    # No BatchNorm in SqueezeNet: its ReLUs die at higher rates. BWN's latent
                    # weights matter only by their signs, which AdamW at 3e-3 flips back and
                    # forth (seed 0: 90.0 % at 3e-3, 95.6 % at 1e-3).
                    method_lr={"squeezenet": 1e-3, "cp_squeezenet": 1e-3, "bwn": 1e-3},
                    finetune_epochs=2, timing_batch=4, timing_repeats=3,
                    methods=tuple(m.key for m in METHODS if m.key != "hashed_block16"))
        return cls(**{**base, **overrides})

    @classmethod
    def tiny(cls, **overrides) -> Settings:
        """The quick run shrunk to a minute or two: 3 identities (9 images of each class per
        split), one epoch, small images and models, one timing round: checks that every
        step works, measures nothing worth reporting."""
        base = dict(identities=3, epochs=1, method_epochs={}, finetune_epochs=1, train_size=32,
                    batch_size=8, fc_width=64, measure_size=48, measure_fc_width=64,
                    timing_batch=2, timing_repeats=1, cp_n_iter_max=2, restarts=0)
        return cls.quick(**{**base, **overrides})

    def epochs_of(self, method: Method) -> int:
        epochs = self.method_epochs.get(method.key, self.epochs)
        return min(epochs, self.finetune_epochs) if method.compress is not None else epochs

    def train_config(self, method: Method, out_dir: str, seed: int) -> TrainConfig:
        return TrainConfig(
            optimizer=self.optimizer, epochs=self.epochs_of(method),
            lr=self.method_lr.get(method.key, self.lr), schedule=self.schedule,
            weight_decay=self.weight_decay, label_smoothing=self.label_smoothing,
            clip_grad_norm=self.clip_grad_norm, channels_last=self.channels_last,
            batch_size=self.batch_size, seed=seed, device=self.device,
            steps_per_epoch=self.steps_per_epoch,
            checkpoint=os.path.join(out_dir, f"{method.key}.ckpt.safetensors"))


def chosen_methods(settings: Settings) -> list[Method]:
    """The rows to run; each needs its baseline (and what it compresses) among them."""
    keys = [m.key for m in METHODS]
    chosen = keys if settings.methods is None else list(settings.methods)
    unknown = [k for k in chosen if k not in keys]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose among {keys}")
    methods = [m for m in METHODS if m.key in chosen]
    lacking = sorted({m.baseline for m in methods} - set(chosen))
    if lacking:
        raise ValueError(f"methods {chosen} need their baselines {lacking} too")
    return methods


def _is_dead(history: list[dict], classes: int) -> bool:
    """Whether a run ended at the uniform prediction: loss ~ ln(classes), val at chance."""
    last = history[-1] if history else {}
    return ("val_accuracy" in last and abs(last["loss"] - math.log(classes)) < 0.02
            and last["val_accuracy"] <= 1.5 / classes)


def _calibrate(methods: list[Method], settings: Settings, classes: int,
               train_images: int) -> dict[str, float]:
    """Planned seconds of every task: a training step of each model timed once here."""
    steps = train_images // settings.batch_size
    if settings.steps_per_epoch:
        steps = min(steps, settings.steps_per_epoch)
    plan, timing = {}, 0.0
    scale = (settings.measure_size / settings.train_size) ** 2 * settings.timing_batch \
        / settings.batch_size
    for method in methods:
        model = method.build(classes, settings.train_size, settings.fc_width).to(settings.device)
        step = Workload(model, settings.train_size, settings.batch_size, settings.device,
                        classes)
        step.train_step()
        seconds = median_seconds(step.train_step, repeats=1, warmup=0, device=settings.device)
        # an epoch: its steps, and the validation (a forward is about a third of a step)
        plan[f"train {method.key}"] = settings.epochs_of(method) * seconds * steps * 1.15
        # both models' steps in each round; the full-size fc layers add a per-step cost
        # that the small model lacks (about as much again), and each model is built, frozen
        # and saved once
        timing += 2 * 2 * (settings.timing_repeats + 1) * seconds * scale + 5
    plan["timing"] = timing
    return plan


def run_table2(settings: Settings, out_dir: str, log=print) -> list[dict]:
    """Trains and measures every chosen method; writes JSON, CSV and a plot to out_dir.

    Under torchrun every process trains its share; process 0 measures and writes the outputs.
    Progress: an overall bar on a terminal (with each epoch's bar), else a line per epoch,
    each with the time spent and an estimate of the time left.
    """
    methods = chosen_methods(settings)
    if init_distributed_from_env(settings.device):
        rank = torch.distributed.get_rank()
        if settings.device == "cuda":
            settings = replace(settings, device=f"cuda:{os.environ.get('LOCAL_RANK', rank)}")
        if rank != 0:
            log = lambda _: None  # noqa: E731
    else:
        rank = 0
    began = time.perf_counter()
    train_set, val_set, test_set, classes = load_splits(
        settings.data, settings.train_size, settings.seed, settings.identities,
        in_memory=settings.in_memory)
    log(f"data: {settings.data} at {settings.train_size}px, {len(train_set)} train / "
        f"{len(val_set)} val / {len(test_set)} test images ({time.perf_counter() - began:.0f} "
        "s); estimating the time of each step")
    progress = Progress(_calibrate(methods, settings, len(classes), len(train_set)), log,
                        bar=None if rank == 0 else False)
    log(f"planned: about {duration(progress.remaining())} in all")
    rows, models = [], {}
    for method in methods:
        paper_acc, paper_cost = PAPER_TABLE2[method.key]
        row = {"method": method.key, "title": method.title, "paper_accuracy": paper_acc,
               "paper_cost": paper_cost}
        row.update(_train_row(method, settings, models, (train_set, val_set, test_set),
                              len(classes), out_dir, progress))
        rows.append(row)
    if rank != 0:
        progress.close()
        return rows
    _measure_rows(methods, rows, settings, len(classes), progress)
    progress.close()
    write_outputs(rows, settings, out_dir)
    log(format_table(rows))
    log(f"done in {duration(time.perf_counter() - began)}")
    return rows


def _train_row(method: Method, settings: Settings, models: dict[str, nn.Module], splits,
               classes: int, out_dir: str, progress: Progress) -> dict:
    """Trains (or compresses and fine-tunes) one method; its accuracy fields. ``models``
    collects the trained models, which later rows may compress."""
    train_set, val_set, test_set = splits
    task = f"train {method.key}"
    row = {}
    os.makedirs(out_dir, exist_ok=True)
    for attempt in range(settings.restarts + 1):
        seed = settings.seed + attempt
        torch.manual_seed(seed)
        config = settings.train_config(method, out_dir, seed)
        if attempt and os.path.exists(config.checkpoint):
            os.remove(config.checkpoint)  # the dead run's
        if method.compress is None:
            progress.update(task, 0, f"{method.title}: training on {settings.data} at "
                            f"{settings.train_size}px")
            model = method.build(classes, settings.train_size, settings.fc_width)
        else:  # METHODS lists the baseline first
            progress.update(task, 0, f"{method.title}: compressing the trained "
                            f"{method.baseline}, then fine-tuning")
            model, notes = method.compress(copy.deepcopy(models[method.baseline]), settings)
            row.update(notes, compressed_accuracy=100 * evaluate(
                model.to(settings.device), test_set, device=settings.device))

        def report(entry: dict, config=config) -> None:
            val = f", val {100 * entry['val_accuracy']:.1f}%" if "val_accuracy" in entry else ""
            progress.update(task, entry["epoch"] / config.epochs,
                            f"  {method.key} epoch {entry['epoch']}/{config.epochs}: loss "
                            f"{entry['loss']:.3f}{val} ({entry['seconds']:.0f} s)")

        config.on_epoch = report
        result = train(model, train_set, val_set, config)
        if not _is_dead(result.history, classes) or attempt == settings.restarts:
            break
        progress.update(task, 0, f"{method.title}: the run died (loss ln {classes}, chance "
                        f"accuracy); restarting from seed {seed + 1}")
    progress.update(task, 1)
    model.cpu()
    if any(m.compress is not None and m.baseline == method.key for m in METHODS):
        models[method.key] = model  # a later row compresses it
    row.update(status="ok", seed=seed, dead=_is_dead(result.history, classes),
               chance_accuracy=100 / classes,
               test_accuracy=100 * evaluate(model, test_set), history=result.history,
               best_val_accuracy=100 * result.best_val_accuracy,
               packed_agreement=100 * packed_agreement(model, test_set))
    return row


def _measure_rows(methods: list[Method], rows: list[dict], settings: Settings, classes: int,
                  progress: Progress) -> None:
    """Sizes of every row and its speed against its baseline's, timed alternately."""
    by_method = {m.key: m for m in methods}
    timed = [m.key for m in methods if m.key != m.baseline] or [methods[0].key]

    def build(key: str) -> nn.Module:
        return by_method[key].build(classes, settings.measure_size, settings.measure_fc_width)

    def done(key: str, fields: dict) -> None:
        progress.update("timing", (timed.index(key) + 1) / len(timed),
                        f"timed {key} against {by_method[key].baseline}: training step "
                        f"{speedup_text(fields, 'epoch')}, inference "
                        f"{speedup_text(fields, 'inference')}")

    measured = measure_rows({m.key: m.baseline for m in methods}, build, settings.measure_size,
                            settings.timing_batch, settings.timing_repeats, settings.device,
                            classes, done)
    for row in rows:
        row.update(measured[row["method"]])
    progress.update("timing", 1)


def format_table(rows: list[dict]) -> str:
    """The rows as a text table beside the paper's accuracies."""
    head = (f"{'method':<32} {'acc %':>6} {'paper %':>8} {'size MB':>8} {'x base':>7} "
            f"{'step s':>7} {'speedup [spread]':>20} {'infer ms':>9} {'speedup [spread]':>20}")
    lines = [head, "-" * len(head)]
    for r in rows:
        # Rows beyond the paper (block hashing) have no paper accuracy.
        paper = "-" if r["paper_accuracy"] is None else f"{r['paper_accuracy']:.2f}"
        lines.append(
            f"{r['title']:<32} {r['test_accuracy']:>6.2f} {paper:>8} "
            f"{r['model_bytes'] / 2**20:>8.2f} {r['size_ratio']:>7.3f} {r['epoch_s']:>7.3f} "
            f"{speedup_text(r, 'epoch'):>20} {1e3 * r['inference_s']:>9.2f} "
            f"{speedup_text(r, 'inference'):>20}")
    chance = rows[0]["chance_accuracy"] if rows else 0
    lines += [
        f"acc: test accuracy on held-out data (chance {chance:.1f} %); paper: its accuracy on "
        "RaFD; size: bytes of the frozen model's weights; x base: ratio to the row's baseline "
        "(VGG-S or SqueezeNet)",
        "step: one training step, inference: one sample, both of the full-size model; speedup: "
        "the baseline's time over the row's, median of rounds timed alternately [lowest-"
        "highest]; ? where the rounds disagree on which is faster"]
    return "\n".join(lines)


def write_outputs(rows: list[dict], settings: Settings, out_dir: str) -> None:
    """Writes table2.json (everything), table2.csv (the table) and table2.png (the plot)."""
    columns = ["method", "title", "test_accuracy", "paper_accuracy", "chance_accuracy",
               "compressed_accuracy", "packed_agreement", "model_bytes", "file_bytes",
               "size_ratio", "epoch_s", "epoch_speedup", "epoch_speedup_spread",
               "epoch_speedup_decided", "inference_s", "inference_speedup",
               "inference_speedup_spread", "inference_speedup_decided", "paper_cost"]
    write_json_csv("table2", rows, settings, columns, out_dir)
    _plot(rows, os.path.join(out_dir, "table2.png"))


def _plot(rows: list[dict], path: str) -> None:
    plt = pyplot()
    fig, (acc, size, speed) = plt.subplots(1, 3, figsize=(16, 4.8))
    names = [r["title"] for r in rows]
    pos = list(range(len(rows)))
    acc.barh([p - 0.2 for p in pos], [r["test_accuracy"] for r in rows], height=0.4,
             label="here (test set)")
    acc.barh([p + 0.2 for p in pos], [r["paper_accuracy"] or 0 for r in rows], height=0.4,
             label="paper (RaFD)", color="0.7")
    acc.axvline(rows[0]["chance_accuracy"], color="r", ls="--", lw=1, label="chance")
    acc.set_yticks(pos, names, fontsize=7)
    acc.invert_yaxis()
    acc.set_xlim(0, 100)
    acc.set_xlabel("accuracy (%)")
    acc.legend(fontsize=7, loc="lower right")
    for r in rows:
        size.scatter(r["model_bytes"] / 2**20, r["test_accuracy"])
        size.annotate(r["title"], (r["model_bytes"] / 2**20, r["test_accuracy"]), fontsize=7)
    size.axhline(rows[0]["chance_accuracy"], color="r", ls="--", lw=1)
    size.set_ylim(0, 100)
    size.set_xscale("log")
    size.set_xlabel("model size (MB, log)")
    size.set_ylabel("test accuracy (%)")
    for offset, name in ((-0.2, "inference"), (0.2, "epoch")):
        values = [r[f"{name}_speedup"] for r in rows]
        spreads = [r.get(f"{name}_speedup_spread") or [r[f"{name}_speedup"]] * 2 for r in rows]
        errors = [[v - s[0] for v, s in zip(values, spreads, strict=True)],
                  [s[1] - v for v, s in zip(values, spreads, strict=True)]]
        bars = speed.barh([p + offset for p in pos], values, height=0.4, xerr=errors,
                          label="inference" if name == "inference" else "training step")
        for bar, r in zip(bars, rows, strict=True):
            if not r.get(f"{name}_speedup_decided", True):
                bar.set_hatch("//")  # the rounds disagree on which is faster
    speed.set_yticks(pos, names, fontsize=7)
    speed.invert_yaxis()
    speed.axvline(1.0, color="k", lw=0.8)
    speed.set_xlabel("speedup over its baseline\n(lines: lowest-highest round; hatched: "
                     "rounds disagree)", fontsize=8)
    speed.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
