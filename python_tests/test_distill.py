import math
import os

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from emokernels.data import FER2013_CLASSES, RAFD_CLASSES
from emokernels.data.emotions import class_mapping, emotion_of
from emokernels.distill import (
    DistillLoss,
    TeacherTargets,
    kd_loss,
    map_logits,
    teacher_outputs,
)
from emokernels.experiments.trainer import TrainConfig, train


def _logits(*shape, seed=0, scale=3.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64) * scale


def _softmax(x):  # by hand, as the reference
    e = torch.exp(x - x.max(1, keepdim=True).values)
    return e / e.sum(1, keepdim=True)


def _reference_kd(s, t, T):
    p, q = _softmax(t / T), _softmax(s / T)
    terms = torch.where(p > 0, p * (torch.log(p) - torch.log(q)), torch.zeros_like(p))
    return T * T * terms.sum() / s.shape[0]


@pytest.mark.parametrize("T", [1.0, 2.5, 4.0])
def test_softmax_mode_is_the_scaled_kl_divergence(T):
    s, t = _logits(16, 8, seed=1), _logits(16, 8, seed=2)
    loss = kd_loss(s, t, temperature=T)
    assert torch.allclose(loss, _reference_kd(s, t, T), rtol=1e-12)
    assert kd_loss(t, t, temperature=T).abs() < 1e-12 and loss > 0


@pytest.mark.parametrize("T", [1.0, 3.0])
def test_softmax_mode_gradient(T):
    # d/ds of T^2 KL(p || softmax(s / T)), averaged over the batch: T (q - p) / B
    s = _logits(5, 7, seed=3).requires_grad_()
    t = _logits(5, 7, seed=4).requires_grad_()
    kd_loss(s, t, temperature=T).backward()
    expected = T * (_softmax(s.detach() / T) - _softmax(t.detach() / T)) / 5
    assert torch.allclose(s.grad, expected, atol=1e-12)
    assert t.grad is None  # the teacher is a constant
    assert torch.autograd.gradcheck(lambda x: kd_loss(x, t.detach(), temperature=T),
                                    (s.detach().clone().requires_grad_(),))


def test_labels_mode_is_cross_entropy_with_the_teacher_argmax():
    s, t = _logits(12, 8, seed=5), _logits(12, 8, seed=6)
    hard = t.argmax(1)
    expected = -torch.log(_softmax(s)[torch.arange(12), hard]).mean()
    for T in (1.0, 4.0):  # the temperature plays no part
        assert torch.allclose(kd_loss(s, t, temperature=T, mode="labels"), expected,
                              rtol=1e-12)


@pytest.mark.parametrize("mode", ["softmax", "labels"])
def test_ground_truth_mixing(mode):
    s, t = _logits(9, 8, seed=7), _logits(9, 8, seed=8)
    labels = torch.randint(0, 8, (9,), generator=torch.Generator().manual_seed(0))
    ce = -torch.log(_softmax(s)[torch.arange(9), labels]).mean()
    distill = kd_loss(s, t, 2.0, mode)
    for w in (0.0, 0.3, 1.0):
        mixed = kd_loss(s, t, 2.0, mode, labels=labels, label_weight=w)
        assert torch.allclose(mixed, (1 - w) * distill + w * ce, rtol=1e-12)
    assert torch.equal(DistillLoss(mode, 2.0, 0.3)(s, (t, labels)),
                       kd_loss(s, t, 2.0, mode, labels, 0.3))
    assert torch.equal(DistillLoss(mode, 2.0)(s, t), distill)


def test_unknown_teacher_classes_have_probability_zero():
    s, t = _logits(6, 8, seed=9).requires_grad_(), _logits(6, 8, seed=10)
    t[:, 1] = -math.inf  # a class the teacher does not know
    loss = kd_loss(s, t, temperature=2.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    assert torch.allclose(loss, _reference_kd(s.detach(), t, 2.0), rtol=1e-12)
    assert (s.grad[:, 1] > 0).all()  # pushed down: the target has no mass there
    assert torch.isfinite(kd_loss(s, t, mode="labels"))


def test_kd_loss_rejects_bad_arguments():
    s = torch.zeros(4, 8)
    with pytest.raises(ValueError, match="mode"):
        kd_loss(s, s, mode="logits")
    with pytest.raises(ValueError, match="both be"):
        kd_loss(s, torch.zeros(4, 7))
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(s, s, temperature=0.0)
    with pytest.raises(ValueError, match="label_weight"):
        kd_loss(s, s, labels=torch.zeros(4, dtype=torch.long), label_weight=1.5)


def test_class_mapping_fer2013_to_rafd_and_back():
    # RaFD: angry, contemptuous, disgusted, fearful, happy, neutral, sad, surprised
    # FER2013: angry, disgust, fear, happy, sad, surprise, neutral
    assert class_mapping(FER2013_CLASSES, RAFD_CLASSES) == (0, None, 1, 2, 3, 6, 4, 5)
    assert class_mapping(RAFD_CLASSES, FER2013_CLASSES) == (0, 2, 3, 4, 6, 7, 5)
    assert class_mapping(RAFD_CLASSES, RAFD_CLASSES) == tuple(range(8))
    for fer, rafd in zip(FER2013_CLASSES, (0, 2, 3, 4, 6, 7, 5), strict=True):
        assert emotion_of(fer) == emotion_of(RAFD_CLASSES[rafd])


def test_class_mapping_refuses_unclear_class_sets():
    with pytest.raises(ValueError, match="not a known emotion"):
        class_mapping(("angry", "bored"), RAFD_CLASSES)
    with pytest.raises(ValueError, match="twice"):
        class_mapping(("angry", "anger"), RAFD_CLASSES)
    with pytest.raises(ValueError, match="share no emotion"):
        class_mapping(("happy",), ("sad", "angry"))


def test_map_logits():
    logits = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]])
    mapped = map_logits(logits, class_mapping(FER2013_CLASSES, RAFD_CLASSES))
    assert mapped.tolist() == [[1.0, -math.inf, 2.0, 3.0, 4.0, 7.0, 5.0, 6.0]]
    # the argmax over the target classes is the teacher's, named the same
    assert RAFD_CLASSES[mapped.argmax(1)] == "neutral" == FER2013_CLASSES[logits.argmax(1)]
    with pytest.raises(ValueError, match="indexes past"):
        map_logits(logits, (0, 7))


class _ImageList(torch.utils.data.Dataset):
    def __init__(self, images, labels=None):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i] if self.labels is None else (self.images[i], self.labels[i])


def test_teacher_targets():
    images = torch.randn(5, 3, 4, 4)
    logits = torch.randn(5, 7)
    mapping = class_mapping(FER2013_CLASSES, RAFD_CLASSES)
    targets = TeacherTargets(_ImageList(images), logits, mapping)
    image, target = targets[3]
    assert torch.equal(image, images[3]) and torch.equal(target, map_logits(logits, mapping)[3])
    labelled = TeacherTargets(_ImageList(images, [4, 3, 2, 1, 0]), logits, with_labels=True)
    image, (target, label) = labelled[1]
    assert torch.equal(image, images[1]) and torch.equal(target, logits[1]) and label == 3
    assert torch.equal(TeacherTargets(_ImageList(images, [0] * 5), logits)[2][0], images[2])
    with pytest.raises(ValueError, match=r"\[5, C\]"):
        TeacherTargets(_ImageList(images), logits[:4])


class _Counting(nn.Module):
    """A teacher that counts the images it sees."""

    def __init__(self, classes=7, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(48, classes))
        self.seen = 0

    def forward(self, x):
        self.seen += x.shape[0]
        return self.net(x)


def _images(n=10, seed=0):
    return _ImageList(torch.randn(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed)))


def test_cache_round_trip_skips_the_teacher(tmp_path):
    cache = tmp_path / "teacher.safetensors"
    teacher, images = _Counting(), _images()
    first = teacher_outputs(teacher, images, cache, batch_size=4)
    assert first.shape == (10, 7) and first.dtype == torch.float32 and teacher.seen == 10
    with torch.no_grad():
        assert torch.allclose(first, teacher.net(images.images))
    again = teacher_outputs(teacher, images, cache, batch_size=3)
    assert teacher.seen == 10 and torch.equal(again, first)
    # without a cache the teacher runs every time
    teacher_outputs(teacher, images)
    assert teacher.seen == 20


def test_cache_of_other_teacher_weights_is_rebuilt_or_refused(tmp_path):
    cache, images = tmp_path / "teacher.safetensors", _images()
    teacher_outputs(_Counting(seed=0), images, cache)
    other = _Counting(seed=1)
    with pytest.raises(ValueError, match="its teacher_weights differ"):
        teacher_outputs(other, images, cache, rebuild=False)
    assert other.seen == 0
    messages = []
    logits = teacher_outputs(other, images, cache, log=messages.append)
    assert other.seen == 10 and "rebuilding" in messages[0]
    with torch.no_grad():
        assert torch.allclose(logits, other.net(images.images))
    assert torch.equal(teacher_outputs(other, images, cache), logits) and other.seen == 10


def test_cache_of_other_data_or_architecture_is_rebuilt_or_refused(tmp_path):
    cache, teacher, images = tmp_path / "teacher.safetensors", _Counting(), _images()
    teacher_outputs(teacher, images, cache)
    changed = _images()
    changed.images[7, 0, 0, 0] += 1e-3  # one pixel of one image
    with pytest.raises(ValueError, match="its data differ"):
        teacher_outputs(teacher, changed, cache, rebuild=False)
    with pytest.raises(ValueError, match="its images, data differ"):
        teacher_outputs(teacher, _images(n=9), cache, rebuild=False)
    clipped = _Counting()
    clipped.net.append(nn.ReLU())  # the same weights, another function
    with pytest.raises(ValueError, match="its teacher_architecture differ"):
        teacher_outputs(clipped, images, cache, rebuild=False)
    logits = teacher_outputs(teacher, changed, cache)
    with torch.no_grad():
        assert torch.allclose(logits, teacher.net(changed.images))


def test_corrupt_or_foreign_cache_is_refused(tmp_path):
    cache, teacher, images = tmp_path / "teacher.safetensors", _Counting(), _images()
    teacher_outputs(teacher, images, cache)
    data = bytearray(cache.read_bytes())
    data[-3] ^= 0x40  # a bit of the last logit
    cache.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        teacher_outputs(teacher, images, cache)
    cache.write_bytes(bytes(data[:len(data) // 2]))
    with pytest.raises(ValueError, match="not a readable safetensors"):
        teacher_outputs(teacher, images, cache)
    save_file({"logits": torch.zeros(10, 7)}, str(cache))
    with pytest.raises(ValueError, match="not a teacher-output cache"):
        teacher_outputs(teacher, images, cache)
    assert teacher.seen == 10  # never rebuilt silently
    assert not [f for f in os.listdir(tmp_path) if "tmp" in f]


def test_students_learn_the_teacher_through_the_trainer():
    # A linear teacher on random images; a linear student matches its softmax outputs.
    teacher, images = _Counting(classes=5, seed=3), _images(n=64, seed=1)
    logits = teacher_outputs(teacher, images)
    targets = TeacherTargets(images, logits)

    def gap(model):
        with torch.no_grad():
            return float(kd_loss(model(images.images), logits))

    torch.manual_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(48, 5))
    before = gap(student)
    result = train(student, targets, None, TrainConfig(
        optimizer="adam", epochs=30, lr=3e-2, batch_size=16, progress=False,
        loss=DistillLoss("softmax", temperature=2.0)))
    assert gap(student) < 0.1 * before
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    # with ground truth mixed in: (logits, labels) targets go through the trainer too
    labels = torch.randint(0, 5, (64,), generator=torch.Generator().manual_seed(2))
    mixed = TeacherTargets(_ImageList(images.images, labels.tolist()), logits, with_labels=True)
    student = nn.Sequential(nn.Flatten(), nn.Linear(48, 5))
    train(student, mixed, None, TrainConfig(optimizer="adam", epochs=30, lr=3e-2,
                                            batch_size=16, progress=False,
                                            loss=DistillLoss("softmax", 2.0, label_weight=1.0)))
    with torch.no_grad():  # only the labels count at label_weight 1: it fits them instead
        predictions = student(images.images).argmax(1)
    assert (predictions == labels).float().mean() > 0.9


def test_distill_loss_by_default_is_the_papers_plain_softmax():
    s, t = _logits(4, 8, seed=11), _logits(4, 8, seed=12)
    expected = F.kl_div(F.log_softmax(s, 1), F.softmax(t, 1), reduction="batchmean")
    assert torch.allclose(DistillLoss()(s, t), expected)
