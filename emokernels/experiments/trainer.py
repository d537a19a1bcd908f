"""One trainer for every method: SGD with momentum (the paper's), Adam or AdamW, an optional
warm-up + cosine learning-rate schedule, train / val split, safetensors checkpoints with resume,
and DistributedDataParallel when launched by torchrun."""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.distributed as dist
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from ..files import atomic_save_file, tensor_digest


@dataclass
class TrainConfig:
    """The paper's settings by default: SGD, momentum 0.9, lr 1e-3, batch 20, constant lr."""

    optimizer: str = "sgd"  # or "adam" / "adamw" (momentum is then beta1)
    epochs: int = 100
    lr: float = 1e-3  # the peak of the schedule
    # "constant", or "cosine": linear warm-up from lr / 25 over ``warmup`` of the steps, then
    # cosine decay to lr / 1000; a pure function of the step, so a resumed run goes on exactly.
    schedule: str = "constant"
    warmup: float = 0.15
    label_smoothing: float = 0.0  # of the default cross-entropy loss
    clip_grad_norm: float | None = None  # total gradient norm cap
    channels_last: bool = False  # model and images in NHWC memory (faster convolutions on CPU)
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 20
    seed: int = 0
    device: str = "cpu"
    workers: int = 0
    steps_per_epoch: int | None = None  # cap, for quick runs
    checkpoint: str | None = None  # safetensors path, written every epoch; resumed from
    progress: bool = True
    # (outputs [B, C], targets as the train set yields them, batched) -> scalar; default:
    # cross-entropy with labels. Distillation passes its loss on the teacher's outputs here.
    loss: Callable[[torch.Tensor, object], torch.Tensor] | None = None
    # Called on process 0 after every epoch with its history entry (epoch, loss,
    # val_accuracy, seconds): logs and progress estimates.
    on_epoch: Callable[[dict], None] | None = None


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)  # per epoch: loss, val_accuracy
    best_val_accuracy: float = 0.0
    resumed_from_epoch: int = 0


class _GlobalBatches(Sampler[int]):
    """This process's share of every global batch of a per-epoch permutation.

    The permutation depends on (seed, epoch) only, so a resumed run and a run on any number of
    processes see the same global batches; process r takes slice r of each.
    """

    def __init__(self, n: int, batch: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.batch, self.seed, self.rank, self.world = n, batch, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        share = self.batch // self.world
        for start in range(0, self.n - self.batch + 1, self.batch):
            first = start + self.rank * share
            yield from order[first:first + share]

    def __len__(self) -> int:
        return self.n // self.batch * (self.batch // self.world)


def distributed() -> bool:
    """Whether this process is part of an initialized process group."""
    return dist.is_available() and dist.is_initialized()


def init_distributed_from_env(device: str) -> bool:
    """Joins the process group when torchrun started this process (gloo on CPU, nccl on GPU)."""
    if distributed() or "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return distributed()
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return True


def _rank() -> int:
    return dist.get_rank() if distributed() else 0


def _world() -> int:
    return dist.get_world_size() if distributed() else 1


def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 64,
             device: str = "cpu") -> float:
    """Top-1 accuracy of ``model`` (eval mode) on ``dataset``, which must not be empty."""
    if len(dataset) == 0:  # an accuracy of 0 (or 1) would be made up
        raise ValueError("cannot evaluate on an empty dataset")
    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for images, labels in DataLoader(dataset, batch_size=batch_size):
            predictions = model(images.to(device)).argmax(1).cpu()
            correct += int((predictions == labels).sum())
            total += labels.numel()
    return correct / total


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    if config.optimizer in ("adam", "adamw"):
        kind = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
        return kind(model.parameters(), lr=config.lr, betas=(config.momentum, 0.999),
                    weight_decay=config.weight_decay)
    raise ValueError(f"optimizer must be sgd, adam or adamw, got {config.optimizer!r}")


def learning_rate(config: TrainConfig, step: int, total: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``total``."""
    if config.schedule == "constant":
        return config.lr
    if config.schedule != "cosine":
        raise ValueError(f"schedule must be constant or cosine, got {config.schedule!r}")
    warm = max(1, round(config.warmup * total))
    if step < warm:
        return config.lr * (1 / 25 + (1 - 1 / 25) * step / warm)
    t = min(1.0, (step - warm) / max(1, total - warm))
    return config.lr * (1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * t)))


def _optimizer_state_names(optimizer: torch.optim.Optimizer) -> tuple[str, ...]:
    return ("momentum_buffer",) if isinstance(optimizer, torch.optim.SGD) else (
        "exp_avg", "exp_avg_sq", "step")


def _save_checkpoint(path: str, model: nn.Module, optimizer: torch.optim.Optimizer,
                     epoch: int, result: TrainResult) -> None:
    tensors = {f"model.{k}": v.detach().clone().contiguous().cpu()
               for k, v in model.state_dict().items()}
    for i, p in enumerate(optimizer.param_groups[0]["params"]):
        for name in _optimizer_state_names(optimizer):
            value = optimizer.state.get(p, {}).get(name)
            if value is not None:
                tensors[f"optim.{i}.{name}"] = value.detach().clone().contiguous().cpu()
    # The optimizer-state keys are listed so that state lost later is an error, while a
    # parameter that never got a gradient (and so has no state) is not.
    meta = {"epoch": str(epoch), "result": json.dumps(asdict(result)),
            "optimizer_state": json.dumps(sorted(k for k in tensors if k.startswith("optim."))),
            "sha256": tensor_digest(tensors)}
    atomic_save_file(tensors, path, meta)  # a crash mid-write never loses the previous one


def _expected_optimizer_state(optimizer: torch.optim.Optimizer,
                              listed: str | None) -> dict[str, tuple]:
    """Checkpoint key -> (shape, dtype or None for any) of the optimizer state the checkpoint
    lists; each listed parameter has all of the optimizer's state entries."""
    try:
        keys = json.loads(listed) if listed is not None else None
    except ValueError:
        keys = None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"optimizer_state {listed!r} is not a list of tensor names")
    params = optimizer.param_groups[0]["params"]
    names = _optimizer_state_names(optimizer)
    expected, per_param = {}, {}
    for key in keys:
        match = re.fullmatch(r"optim\.([0-9]+)\.([a-z_]+)", key)
        if not match or int(match[1]) >= len(params) or match[2] not in names:
            raise ValueError(f"optimizer_state lists {key!r}, which this optimizer does not keep")
        p = params[int(match[1])]
        expected[key] = (torch.Size(), None) if match[2] == "step" else (p.shape, p.dtype)
        per_param.setdefault(int(match[1]), set()).add(match[2])
    partial = [i for i, kept in per_param.items() if kept != set(names)]
    if partial:
        raise ValueError(f"optimizer_state is incomplete for parameters {sorted(partial)}")
    return expected


def _parse_result(text: str, epoch: int) -> TrainResult:
    """The ``result`` metadata as a TrainResult whose history covers ``epoch`` epochs."""
    try:
        result = TrainResult(**json.loads(text))
    except (TypeError, ValueError) as err:  # not JSON, not an object, or unknown fields
        raise ValueError(f"result is not a TrainResult ({err})") from err
    history = result.history
    if not isinstance(history, list) or len(history) != epoch:
        raise ValueError(f"result holds {len(history) if isinstance(history, list) else 'no'} "
                         f"epochs of history, the checkpoint says {epoch}")
    if any(not isinstance(e, dict) or e.get("epoch") != i + 1 for i, e in enumerate(history)):
        raise ValueError("result history is not numbered epoch 1, 2, ...")
    best = result.best_val_accuracy
    if isinstance(best, bool) or not isinstance(best, (int, float)) or not 0 <= best <= 1:
        raise ValueError(f"result best_val_accuracy {best!r} is not a number in 0..1")
    return result


def _state_problems(expected: dict[str, tuple], tensors: dict[str, torch.Tensor]) -> list[str]:
    """What keeps ``tensors`` from being exactly ``expected`` (name -> (shape, dtype or None for
    any)): missing and unexpected names, other shapes or dtypes, non-finite values."""
    problems = [f"missing {k}" for k in sorted(expected.keys() - tensors.keys())]
    problems += [f"unexpected {k}" for k in sorted(tensors.keys() - expected.keys())]
    for key in sorted(expected.keys() & tensors.keys()):
        shape, dtype = expected[key]
        t = tensors[key]
        if t.shape != shape or (dtype is not None and t.dtype != dtype):
            problems.append(f"{key} is {t.dtype} {tuple(t.shape)}, expected "
                            f"{dtype or 'any dtype'} {tuple(shape)}")
        elif t.is_floating_point() and not torch.isfinite(t).all():
            problems.append(f"{key} holds non-finite values")
    return problems


def _read_checkpoint(path: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """``(metadata, tensors)`` of a checkpoint whose tensors match its recorded sha256."""
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(path)  # on the CPU: validated before anything reaches the model
    except SafetensorError as err:
        raise ValueError(f"checkpoint {path} is not a readable safetensors file: {err}") from err
    if "epoch" not in meta:
        raise ValueError(f"{path} is not a training checkpoint")
    if "sha256" not in meta:
        raise ValueError(f"checkpoint {path} has no sha256 checksum of its tensors (an older "
                         "or foreign file); delete it to train from scratch")
    if meta["sha256"] != tensor_digest(tensors):
        raise ValueError(f"checkpoint {path} is corrupt: the tensor data does not match its "
                         "sha256 checksum")
    return meta, tensors


def _check_checkpoint(path: str, meta: dict[str, str], tensors: dict[str, torch.Tensor],
                      model: nn.Module, optimizer: torch.optim.Optimizer,
                      config: TrainConfig) -> tuple[int, TrainResult]:
    """Validates every field of a checkpoint read by :func:`_read_checkpoint`; raises
    ValueError naming what is wrong."""
    if not re.fullmatch(r"[0-9]+", meta["epoch"]):
        raise ValueError(f"checkpoint {path} is corrupt: epoch {meta['epoch']!r} is not a "
                         "non-negative integer")
    epoch = int(meta["epoch"])
    if epoch > config.epochs:
        raise ValueError(f"checkpoint {path} is at epoch {epoch}, beyond the {config.epochs} "
                         "epochs configured: raise epochs to go on training it, or use "
                         "another checkpoint path")
    try:
        result = _parse_result(meta.get("result", ""), epoch)
    except ValueError as err:
        raise ValueError(f"checkpoint {path} is corrupt: {err}") from err
    expected = {f"model.{k}": (v.shape, v.dtype) for k, v in model.state_dict().items()}
    try:
        expected.update(_expected_optimizer_state(optimizer, meta.get("optimizer_state")))
    except ValueError as err:
        raise ValueError(f"checkpoint {path} is corrupt: {err}") from err
    problems = _state_problems(expected, tensors)
    if problems:
        raise ValueError(f"checkpoint {path} does not fit this model and optimizer at epoch "
                         f"{epoch}: " + "; ".join(problems))
    return epoch, result


def _load_checkpoint(path: str, model: nn.Module, optimizer: torch.optim.Optimizer,
                     config: TrainConfig) -> tuple[int, TrainResult]:
    """Restores model and optimizer from ``path`` once all of it is validated, never half."""
    meta, tensors = _read_checkpoint(path)
    epoch, result = _check_checkpoint(path, meta, tensors, model, optimizer, config)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for i, p in enumerate(optimizer.param_groups[0]["params"]):
        for name in _optimizer_state_names(optimizer):
            if f"optim.{i}.{name}" in tensors:
                value = tensors[f"optim.{i}.{name}"]
                optimizer.state[p][name] = value if name == "step" else value.to(p.device)
    return epoch, result


def load_trained_weights(path: str | os.PathLike, model: nn.Module) -> nn.Module:
    """Loads the model weights of a checkpoint written by :func:`train` into ``model`` (the
    same architecture) and returns it; the optimizer state is ignored. A file that is not such
    a checkpoint, is corrupt, or does not fit the model exactly is a ValueError, raised before
    ``model`` changes."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    _, tensors = _read_checkpoint(path)
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    problems = _state_problems({k: (v.shape, v.dtype) for k, v in model.state_dict().items()},
                               weights)
    if problems:
        raise ValueError(f"checkpoint {path} does not fit this model: " + "; ".join(problems))
    model.load_state_dict(weights)
    return model


def _to_device(targets, device: str):
    """A batch of targets (a tensor, or tuples / lists of them) on ``device``."""
    if isinstance(targets, (tuple, list)):
        return type(targets)(_to_device(t, device) for t in targets)
    return targets.to(device)


def train(model: nn.Module, train_set: Dataset, val_set: Dataset | None,
          config: TrainConfig) -> TrainResult:
    """Trains ``model`` in place with cross-entropy (or ``config.loss``); returns the
    per-epoch history.

    Under torchrun (or an initialized process group) the model is wrapped in
    DistributedDataParallel and each process takes ``batch_size / world_size`` samples of every
    global batch, so the run matches a single-process one with the same settings (up to float
    summation order; layers drawing random numbers, like dropout, draw them per process, and
    BatchNorm normalizes each process's share of the batch).
    """
    device = config.device
    world = _world()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must divide by the {world} processes")
    # Incomplete batches are dropped: fewer samples than a batch would train nothing at all.
    if len(train_set) < config.batch_size:
        raise ValueError(f"train set has {len(train_set)} samples, fewer than one batch of "
                         f"{config.batch_size}")
    if val_set is not None and len(val_set) == 0:
        raise ValueError("val set is empty: pass val_set=None to train without validation")
    learning_rate(config, 0, 1)  # an unknown schedule fails before any work
    if not 0 <= config.label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {config.label_smoothing}")
    if config.clip_grad_norm is not None and not config.clip_grad_norm > 0:
        raise ValueError(f"clip_grad_norm must be > 0 or None, got {config.clip_grad_norm}")
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    optimizer = _optimizer(model, config)
    start, result = 0, TrainResult()
    if config.checkpoint and os.path.exists(config.checkpoint):
        start, result = _load_checkpoint(config.checkpoint, model, optimizer, config)
        result.resumed_from_epoch = start
    sampler = _GlobalBatches(len(train_set), config.batch_size, config.seed, _rank(), world)
    net = nn.parallel.DistributedDataParallel(model) if distributed() else model
    loader = DataLoader(train_set, batch_size=config.batch_size // world, sampler=sampler,
                        num_workers=config.workers)
    loss_fn = config.loss or nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    per_epoch = min(len(loader), config.steps_per_epoch or len(loader))
    for epoch in range(start, config.epochs):
        began = time.perf_counter()
        sampler.set_epoch(epoch)
        torch.manual_seed(config.seed * 7919 + epoch)  # dropout masks, the same on resume
        net.train()
        total, steps = 0.0, 0
        # disable=None: tqdm stays quiet when stderr is not a terminal (logs, CI)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                   disable=None if config.progress and _rank() == 0 else True,
                   total=config.steps_per_epoch)
        for images, targets in bar:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, epoch * per_epoch + steps,
                                            config.epochs * per_epoch)
            optimizer.zero_grad(set_to_none=True)
            images = images.to(device, memory_format=memory_format)
            loss = loss_fn(net(images), _to_device(targets, device))
            if not torch.isfinite(loss):  # nothing after it is worth a checkpoint
                raise FloatingPointError(f"the loss is {loss.item()} at epoch {epoch + 1}, step "
                                         f"{steps + 1}: training diverged (lower the lr, or "
                                         "set clip_grad_norm)")
            loss.backward()
            if config.clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
            optimizer.step()
            total += loss.item()
            steps += 1
            bar.set_postfix(loss=f"{total / steps:.3f}")
            if config.steps_per_epoch and steps >= config.steps_per_epoch:
                break
        entry = {"epoch": epoch + 1, "loss": total / max(1, steps)}
        if val_set is not None:
            entry["val_accuracy"] = evaluate(model, val_set, device=device)
            result.best_val_accuracy = max(result.best_val_accuracy, entry["val_accuracy"])
        entry["seconds"] = time.perf_counter() - began
        result.history.append(entry)
        if config.checkpoint and _rank() == 0:
            _save_checkpoint(config.checkpoint, model, optimizer, epoch + 1, result)
        if config.on_epoch is not None and _rank() == 0:
            config.on_epoch(entry)
    return result
