import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import emokernels.files
from emokernels.experiments import TrainConfig, evaluate, train
from emokernels.experiments.trainer import learning_rate
from emokernels.files import tensor_digest

from .ddp_run import run, tiny_data, tiny_model


def test_training_lowers_the_loss():
    model = tiny_model()
    result = train(model, tiny_data(), tiny_data(),
                   TrainConfig(epochs=6, lr=0.05, batch_size=16, progress=False))
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.history[-1]["val_accuracy"] == evaluate(model, tiny_data())


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_matches_an_uninterrupted_run(tmp_path, optimizer):
    checkpoint = str(tmp_path / "ckpt.safetensors")
    straight = run(epochs=4, optimizer=optimizer)
    run(epochs=2, checkpoint=checkpoint, optimizer=optimizer)  # "interrupted" after 2 epochs
    resumed_model = tiny_model()
    result = train(resumed_model, tiny_data(), None,
                   TrainConfig(epochs=4, lr=0.05 if optimizer == "sgd" else 0.01,
                               batch_size=16, progress=False, checkpoint=checkpoint,
                               optimizer=optimizer))
    assert result.resumed_from_epoch == 2 and len(result.history) == 4
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed_model.state_dict()[key], value)


def test_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(1)}, path)
    with pytest.raises(ValueError, match="not a training checkpoint"):
        train(tiny_model(), tiny_data(), None,
              TrainConfig(epochs=1, progress=False, checkpoint=str(path)))


def _config(checkpoint: str, optimizer: str = "sgd", epochs: int = 4) -> TrainConfig:
    """ddp_run.run's settings: a checkpoint it wrote resumes under these."""
    return TrainConfig(epochs=epochs, lr=0.05 if optimizer == "sgd" else 0.01, batch_size=16,
                       progress=False, checkpoint=checkpoint, optimizer=optimizer)


def _rewrite(path: str, edit: Callable[[dict], object] | None = None, **meta) -> None:
    """Edits a checkpoint's tensors, re-signs them, then edits its metadata (None deletes a
    key): the field under test is the only thing wrong with it."""
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    if edit:
        edit(tensors)
    metadata["sha256"] = tensor_digest(tensors)
    metadata.update(meta)
    save_file(tensors, path, metadata={k: v for k, v in metadata.items() if v is not None})


def _assert_refused(checkpoint: str, match: str, optimizer: str = "sgd") -> None:
    """Resuming raises ValueError naming the file, and leaves the model untouched."""
    model = tiny_model()
    with pytest.raises(ValueError, match=match) as err:
        train(model, tiny_data(), None, _config(checkpoint, optimizer))
    assert checkpoint in str(err.value)
    for key, value in tiny_model().state_dict().items():
        assert torch.equal(model.state_dict()[key], value), f"{key} was half-applied"


def _poison(key: str, value: float) -> Callable[[dict], None]:
    """An edit setting one randomly chosen element of ``key`` to ``value``."""
    def edit(tensors: dict) -> None:
        flat = tensors[key].view(-1)
        flat[torch.randint(flat.numel(), (), generator=torch.Generator().manual_seed(3))] = value
    return edit


@pytest.mark.parametrize("seed", range(4))
def test_refuses_a_checkpoint_with_a_flipped_bit(tmp_path, seed):
    checkpoint = str(tmp_path / "ckpt.safetensors")
    run(epochs=2, checkpoint=checkpoint)
    data = bytearray(open(checkpoint, "rb").read())
    start = 8 + int.from_bytes(data[:8], "little")  # tensor bytes follow the JSON header
    g = torch.Generator().manual_seed(seed)
    data[int(torch.randint(start, len(data), (), generator=g))] ^= 1 << int(
        torch.randint(8, (), generator=g))
    open(checkpoint, "wb").write(data)
    _assert_refused(checkpoint, "does not match its sha256 checksum")


@pytest.mark.parametrize("optimizer, edit, meta, match", [
    ("sgd", _poison("optim.2.momentum_buffer", float("nan")), {},
     "optim.2.momentum_buffer holds non-finite values"),
    ("adam", _poison("optim.1.exp_avg_sq", float("inf")), {},
     "optim.1.exp_avg_sq holds non-finite values"),
    ("sgd", _poison("model.3.weight", float("-inf")), {}, "model.3.weight holds non-finite"),
    ("sgd", lambda t: t.pop("optim.3.momentum_buffer"), {}, "missing optim.3.momentum_buffer"),
    ("adam", lambda t: t.pop("optim.0.step"), {}, "missing optim.0.step"),
    ("adam", lambda t: t.pop("optim.5.exp_avg"), {}, "missing optim.5.exp_avg"),
    ("sgd", lambda t: t.pop("model.0.bias"), {}, "missing model.0.bias"),
    ("sgd", lambda t: t.update({"model.extra": torch.ones(2)}), {}, "unexpected model.extra"),
    ("sgd", lambda t: t.update({"optim.1.exp_avg": torch.ones(8)}), {},
     "unexpected optim.1.exp_avg"),
    ("sgd", lambda t: t.update({"model.7.weight": t["model.7.weight"].t().contiguous()}), {},
     r"model.7.weight is torch.float32 \(32, 4\), expected torch.float32 \(4, 32\)"),
    ("sgd", lambda t: t.update({"model.0.weight": t["model.0.weight"].double()}), {},
     "model.0.weight is torch.float64"),
    ("sgd", None, {"epoch": "99"}, "at epoch 99, beyond the 4 epochs configured"),
    ("sgd", None, {"epoch": "-5"}, "epoch '-5' is not a non-negative integer"),
    ("sgd", None, {"epoch": "2.0"}, "epoch '2.0' is not"),
    ("sgd", None, {"epoch": " 2"}, "epoch ' 2' is not"),
    ("sgd", None, {"epoch": "\u0662"}, "is not a non-negative integer"),  # int() takes it
    ("sgd", None, {"epoch": "3"}, "result holds 2 epochs of history, the checkpoint says 3"),
    ("sgd", None, {"result": "{\"history\": ["}, "result is not a TrainResult"),
    ("sgd", None, {"result": "[1, 2]"}, "result is not a TrainResult"),
    ("sgd", None, {"result": "{\"history\": [], \"bogus\": 1}"}, "result is not a TrainResult"),
    ("sgd", None, {"result": "{\"history\": [{\"epoch\": 2}, {\"epoch\": 1}]}"},
     "not numbered epoch 1, 2"),
    ("sgd", None, {"result": None}, "result is not a TrainResult"),
    ("sgd", None, {"result": json.dumps({"history": [{"epoch": 1}, {"epoch": 2}],
                                         "best_val_accuracy": "high"})},
     "best_val_accuracy 'high' is not a number in 0..1"),
    ("sgd", None, {"sha256": None}, "has no sha256 checksum"),
    ("sgd", None, {"sha256": "0" * 64}, "does not match its sha256 checksum"),
])
def test_refuses_a_corrupt_checkpoint(tmp_path, optimizer, edit, meta, match):
    checkpoint = str(tmp_path / "ckpt.safetensors")
    run(epochs=2, checkpoint=checkpoint, optimizer=optimizer)
    _rewrite(checkpoint, edit, **meta)
    _assert_refused(checkpoint, match, optimizer)


def test_refuses_a_truncated_checkpoint(tmp_path):
    checkpoint = str(tmp_path / "ckpt.safetensors")
    run(epochs=1, checkpoint=checkpoint)
    data = open(checkpoint, "rb").read()
    open(checkpoint, "wb").write(data[:len(data) * 2 // 3])
    _assert_refused(checkpoint, "not a readable safetensors file")


def test_a_finished_checkpoint_resumes_to_no_further_training(tmp_path):
    checkpoint = str(tmp_path / "ckpt.safetensors")
    trained = run(epochs=2, checkpoint=checkpoint)
    model = tiny_model()
    result = train(model, tiny_data(), None, _config(checkpoint, epochs=2))
    assert result.resumed_from_epoch == 2 and [e["epoch"] for e in result.history] == [1, 2]
    for key, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)


def test_checkpoint_write_ignores_a_stale_temp_path(tmp_path):
    checkpoint = str(tmp_path / "ckpt.safetensors")
    os.mkdir(f"{checkpoint}.tmp")  # another writer's, or a crashed run's: not ours to use
    run(epochs=1, checkpoint=checkpoint)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.safetensors", "ckpt.safetensors.tmp"]
    assert load_file(checkpoint).keys() >= {"model.0.weight", "optim.0.momentum_buffer"}


def test_failed_checkpoint_write_keeps_the_previous_one_and_no_temp_file(tmp_path,
                                                                         monkeypatch):
    checkpoint = str(tmp_path / "ckpt.safetensors")
    run(epochs=1, checkpoint=checkpoint)
    before = open(checkpoint, "rb").read()

    def disk_full(tensors, path, metadata=None):
        open(path, "wb").write(os.urandom(100))  # a partial write
        raise OSError("No space left on device")

    monkeypatch.setattr(emokernels.files, "save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        train(tiny_model(), tiny_data(), None, _config(checkpoint, epochs=2))
    assert os.listdir(tmp_path) == ["ckpt.safetensors"]
    assert open(checkpoint, "rb").read() == before


@pytest.mark.parametrize("samples", [0, 1, 5, 15])
def test_refuses_a_train_set_smaller_than_one_batch(samples):
    data = tiny_data()
    small = torch.utils.data.Subset(data, torch.randperm(len(data))[:samples].tolist())
    model = tiny_model()
    with pytest.raises(ValueError,
                       match=f"train set has {samples} samples, fewer than one batch of 16"):
        train(model, small, None, TrainConfig(epochs=1, batch_size=16, progress=False))


def test_one_batch_is_enough_to_train():
    data = tiny_data()
    one_batch = torch.utils.data.Subset(data, torch.randperm(len(data))[:16].tolist())
    model = tiny_model()
    result = train(model, one_batch, None,
                   TrainConfig(epochs=1, lr=0.05, batch_size=16, progress=False))
    assert len(result.history) == 1 and result.history[0]["loss"] > 0
    assert not torch.equal(model[0].weight, tiny_model()[0].weight)


def test_refuses_an_empty_val_set():
    empty = torch.utils.data.Subset(tiny_data(), [])
    with pytest.raises(ValueError, match="val set is empty"):
        train(tiny_model(), tiny_data(), empty, TrainConfig(epochs=1, progress=False))
    with pytest.raises(ValueError, match="cannot evaluate on an empty dataset"):
        evaluate(tiny_model(), empty)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="sgd, adam or adamw"):
        train(tiny_model(), tiny_data(), None, TrainConfig(epochs=1, optimizer="lion"))


def test_two_process_ddp_equals_single_process(tmp_path):
    out = tmp_path / "ddp.safetensors"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with socket.socket() as probe:  # a free loopback port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(port),
           os.path.join(os.path.dirname(__file__), "ddp_run.py"), str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr[-3000:]
    single = run(epochs=3)
    ddp = load_file(out)
    for key, value in single.state_dict().items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-4, atol=1e-5)


def test_a_parameter_without_gradients_resumes(tmp_path):
    """A parameter that never gets a gradient has no optimizer state: not an error."""
    def model_with_unused():
        model = tiny_model()
        model.register_parameter("unused", torch.nn.Parameter(torch.ones(3)))
        return model

    checkpoint = str(tmp_path / "ckpt.safetensors")
    train(model_with_unused(), tiny_data(), None, _config(checkpoint, epochs=1))
    result = train(model_with_unused(), tiny_data(), None, _config(checkpoint, epochs=2))
    assert result.resumed_from_epoch == 1 and len(result.history) == 2


def test_refuses_an_incomplete_optimizer_state_list(tmp_path):
    checkpoint = str(tmp_path / "ckpt.safetensors")
    run(epochs=2, checkpoint=checkpoint, optimizer="adam")
    with safe_open(checkpoint, framework="pt") as f:
        listed = json.loads(f.metadata()["optimizer_state"])
    listed.remove("optim.0.step")
    _rewrite(checkpoint, lambda t: t.pop("optim.0.step"), optimizer_state=json.dumps(listed))
    _assert_refused(checkpoint, r"optimizer_state is incomplete for parameters \[0\]", "adam")


def test_load_trained_weights_takes_the_model_alone(tmp_path):
    from emokernels.experiments.trainer import load_trained_weights

    checkpoint = str(tmp_path / "ckpt.safetensors")
    trained = run(epochs=2, checkpoint=checkpoint, optimizer="adam")
    model = load_trained_weights(checkpoint, tiny_model())
    for key, value in trained.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    other = tiny_model()
    other[0] = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    with pytest.raises(ValueError, match="does not fit this model: unexpected 0.bias"):
        load_trained_weights(checkpoint, other)
    fresh = tiny_model()
    _rewrite(checkpoint, _poison("model.0.weight", float("nan")))
    with pytest.raises(ValueError, match="does not fit this model: 0.weight holds non-finite"):
        load_trained_weights(checkpoint, fresh)
    data = bytearray(open(checkpoint, "rb").read())
    data[-1] ^= 1
    open(checkpoint, "wb").write(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        load_trained_weights(checkpoint, fresh)
    for key, value in tiny_model().state_dict().items():  # refused before any change
        assert torch.equal(fresh.state_dict()[key], value)
    with pytest.raises(FileNotFoundError):
        load_trained_weights(str(tmp_path / "absent.safetensors"), fresh)


def test_cosine_schedule_warms_up_then_decays():
    config = TrainConfig(lr=0.1, schedule="cosine", warmup=0.2)
    lrs = [learning_rate(config, step, 100) for step in range(100)]
    assert lrs[0] == pytest.approx(0.1 / 25)
    assert max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) == 20
    assert all(a < b for a, b in zip(lrs[:20], lrs[1:21], strict=True))  # warm-up rises
    assert all(a > b for a, b in zip(lrs[20:-1], lrs[21:], strict=True))  # then decays
    assert lrs[-1] < 0.1 * 0.01
    assert learning_rate(TrainConfig(lr=0.1), 57, 100) == 0.1  # constant by default
    with pytest.raises(ValueError, match="schedule must be"):
        learning_rate(TrainConfig(schedule="step"), 0, 10)


@pytest.mark.parametrize("change, match", [
    (dict(schedule="linear"), "schedule must be"),
    (dict(label_smoothing=1.0), "label_smoothing"),
    (dict(clip_grad_norm=0.0), "clip_grad_norm"),
])
def test_refuses_bad_recipe_settings_before_training(change, match):
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        train(model, tiny_data(), None, TrainConfig(epochs=1, batch_size=16, progress=False,
                                                    **change))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_resume_mid_schedule_matches_an_uninterrupted_run(tmp_path):
    # warm-up + cosine with AdamW, label smoothing, clipping and channels-last: the learning
    # rate is a function of the step, so a run stopped after epoch 2 of 4 goes on exactly
    recipe = dict(epochs=4, lr=0.01, optimizer="adamw", schedule="cosine", weight_decay=1e-3,
                  label_smoothing=0.1, clip_grad_norm=1.0, channels_last=True, batch_size=16,
                  progress=False)
    straight = tiny_model()
    expected = train(straight, tiny_data(), tiny_data(), TrainConfig(**recipe))
    checkpoint = str(tmp_path / "ckpt.safetensors")

    def stop_after_two(entry):
        if entry["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny_model(), tiny_data(), tiny_data(),
              TrainConfig(**recipe, checkpoint=checkpoint, on_epoch=stop_after_two))
    entries = []
    resumed = tiny_model()
    result = train(resumed, tiny_data(), tiny_data(),
                   TrainConfig(**recipe, checkpoint=checkpoint, on_epoch=entries.append))
    assert result.resumed_from_epoch == 2 and [e["epoch"] for e in entries] == [3, 4]
    assert [e["loss"] for e in result.history] == [e["loss"] for e in expected.history]
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value)


def test_clipping_caps_the_update():
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    train(model, tiny_data(), None, TrainConfig(epochs=1, lr=1.0, momentum=0.0, batch_size=64,
                                                clip_grad_norm=1e-3, progress=False))
    step = torch.cat([(p.detach() - b).flatten() for p, b in
                      zip(model.parameters(), before, strict=True)])
    assert 0 < step.norm() <= 1e-3 * (1 + 1e-4)  # one SGD step of a gradient of norm 1e-3


def test_a_non_finite_loss_stops_training_before_a_checkpoint(tmp_path):
    model = tiny_model()
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = float("nan")
    checkpoint = tmp_path / "ckpt.safetensors"
    with pytest.raises(FloatingPointError, match="diverged"):
        train(model, tiny_data(), None, TrainConfig(epochs=1, batch_size=16, progress=False,
                                                    checkpoint=str(checkpoint)))
    assert not checkpoint.exists()


def test_two_runs_with_one_seed_are_identical():
    histories = []
    for _ in range(2):
        model = tiny_model()
        histories.append(train(model, tiny_data(), tiny_data(), TrainConfig(
            epochs=2, lr=0.01, optimizer="adamw", schedule="cosine", batch_size=16,
            progress=False)).history)
    assert [(e["loss"], e["val_accuracy"]) for e in histories[0]] == \
        [(e["loss"], e["val_accuracy"]) for e in histories[1]]
