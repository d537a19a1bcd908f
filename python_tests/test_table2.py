import csv
import json
import math
import os

import pytest
from PIL import Image
from torch import nn

from emokernels.cli import main
from emokernels.experiments.measure import speedup_text
from emokernels.experiments.table2 import (
    METHODS,
    Settings,
    _is_dead,
    chosen_methods,
    format_table,
    run_table2,
)
from emokernels.models import vgg_s
from emokernels.models.squeezenet import CP_LAYERS


def test_table2_small_run_writes_every_output(tmp_path):
    # fc 512: the hashed layers generate every virtual weight per call, at any batch size;
    # a few ALS sweeps: the CP fits of two 256x64x3x3 kernels take ~10 s each by default
    settings = Settings(train_size=48, epochs=1, steps_per_epoch=2, lr=1e-2, batch_size=4,
                        measure_size=48, timing_repeats=1, identities=6, fc_width=512,
                        measure_fc_width=512, cp_n_iter_max=2)
    rows = run_table2(settings, str(tmp_path), log=lambda _: None)
    assert [r["method"] for r in rows] == [m.key for m in METHODS]
    by_key = {r["method"]: r for r in rows}
    for key in ("vgg_s", "hashed", "hashed_block16", "bwn", "xnor", "binary_activations",
                "squeezenet", "cp_squeezenet"):
        row = by_key[key]
        assert row["status"] == "ok" and 0 <= row["test_accuracy"] <= 100
        assert row["epoch_s"] > 0 and row["inference_s"] > 0 and row["file_bytes"] > 0
        assert row["packed_agreement"] >= 75  # eval runs packed: (nearly) the float predictions
    # binary weights: 1 bit instead of 32 for all but the first and last layer
    assert by_key["xnor"]["model_bytes"] < by_key["vgg_s"]["model_bytes"] / 10
    assert by_key["bwn"]["size_ratio"] == by_key["bwn"]["model_bytes"] / by_key["vgg_s"][
        "model_bytes"]
    # hashed: the fc layers' weights and biases at 1/8, the conv layers in float
    fc = [m for m in vgg_s(8, 48, fc_width=512) if isinstance(m, nn.Linear)]
    fc_bytes = sum(4 * (m.weight.numel() + m.bias.numel()) for m in fc)
    hashed_fc_bytes = sum(4 * (round(m.weight.numel() / 8) + max(1, round(m.bias.numel() / 8)))
                          for m in fc)
    for key in ("hashed", "hashed_block16"):
        assert by_key[key]["model_bytes"] == (by_key["vgg_s"]["model_bytes"] - fc_bytes
                                              + hashed_fc_bytes)
    assert by_key["hashed"]["file_bytes"] >= by_key["hashed"]["model_bytes"]
    assert by_key["hashed"]["packed_agreement"] == 100  # eval runs the training op
    # CP: the trained SqueezeNet's two 64->256 3x3 layers at rank 192, fine-tuned
    cp = by_key["cp_squeezenet"]
    assert cp["model_bytes"] == by_key["squeezenet"]["model_bytes"] - 2 * 4 * (
        256 * 64 * 9 - 192 * (64 + 3 + 3 + 256))
    assert cp["size_ratio"] < 0.8 and len(cp["history"]) == 1
    assert set(cp["decomposition_error"]) == set(CP_LAYERS)
    assert all(0 < e < 1 for e in cp["decomposition_error"].values())
    assert 0 <= cp["compressed_accuracy"] <= 100 and cp["packed_agreement"] == 100
    for name in ("table2.json", "table2.csv", "table2.png"):
        assert os.path.getsize(tmp_path / name) > 0
    saved = json.loads((tmp_path / "table2.json").read_text())
    assert saved["settings"]["epochs"] == 1 and len(saved["rows"]) == len(METHODS)
    assert "XNOR-Net VGG-S" in format_table(rows)
    # checkpoints let an interrupted run resume: a rerun trains no further epochs
    again = run_table2(settings, str(tmp_path), log=lambda _: None)
    assert {r["method"]: len(r.get("history", [])) for r in again} == \
        {r["method"]: len(r.get("history", [])) for r in rows}


def test_demo_command_end_to_end_tiny(tmp_path, capsys):
    # `make demo` runs `emokernels reproduce table2 --quick`; --tiny is the same recipe and
    # steps on 9 images of each class per split, one epoch, small models
    out = tmp_path / "out"
    assert main(["reproduce", "table2", "--tiny", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    quick = Settings.quick()
    keys = [m.key for m in METHODS if m.key in quick.methods]
    assert len(keys) == 7  # the paper's seven rows
    # a line per epoch (stdout is no terminal here) with the time spent and left
    assert sum("epoch 1/1" in line and "elapsed, about" in line
               for line in printed.splitlines()) == 7
    assert "planned: about" in printed and "done in" in printed
    for m in METHODS:
        if m.key in keys:
            assert m.title in printed
    saved = json.loads((out / "table2.json").read_text())
    assert saved["settings"]["identities"] == 3 and saved["settings"]["in_memory"]
    rows = saved["rows"]
    assert [r["method"] for r in rows] == keys
    with open(out / "table2.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["method"] for r in table] == keys
    for row, line in zip(rows, table, strict=True):
        assert 0 <= row["test_accuracy"] <= 100 and row["chance_accuracy"] == 12.5
        assert float(line["test_accuracy"]) == pytest.approx(row["test_accuracy"])
        assert row["epoch_s"] > 0 and row["inference_s"] > 0 and row["model_bytes"] > 0
        assert len(row["history"]) == 1 and row["history"][0]["seconds"] > 0
        if row["method"] in ("vgg_s", "squeezenet"):
            assert row["epoch_speedup"] == row["inference_speedup"] == row["size_ratio"] == 1
            continue
        for name in ("epoch", "inference"):
            low, high = row[f"{name}_speedup_spread"]
            assert low <= row[f"{name}_speedup"] <= high
            assert row[f"{name}_speedup_decided"] == (low > 1 or high < 1)
            assert speedup_text(row, name) in printed
    with Image.open(out / "table2.png") as image:
        assert image.format == "PNG" and image.size[0] > 1000


def test_chosen_methods_need_their_baselines():
    assert [m.key for m in chosen_methods(Settings(methods=("vgg_s", "bwn")))] == ["vgg_s",
                                                                                  "bwn"]
    with pytest.raises(ValueError, match="unknown methods"):
        chosen_methods(Settings(methods=("vgg_s", "ternary")))
    with pytest.raises(ValueError, match="baselines"):
        chosen_methods(Settings(methods=("cp_squeezenet",)))


def test_a_dead_run_is_one_at_the_uniform_prediction():
    dead = [{"epoch": 1, "loss": math.log(8) + 0.001, "val_accuracy": 0.125}]
    assert _is_dead(dead, 8)
    assert not _is_dead([{**dead[0], "val_accuracy": 0.4}], 8)
    assert not _is_dead([{**dead[0], "loss": 1.2}], 8)
    assert not _is_dead([{"epoch": 1, "loss": math.log(8)}], 8)  # no validation: unknown
