import json
import os

import pytest
import torch
from torch import nn

import emokernels as ek


def net() -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 8),
    )


@pytest.mark.parametrize("method, options", [("xnor", {"scale_activations": True}), ("bwn", {}),
                                             ("binary-activations", {})])
def test_round_trip(tmp_path, method, options):
    model = ek.convert(net(), method, **options).eval()
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        expected = model(x)
    path = tmp_path / "model.safetensors"
    ek.save_compressed(model, path)
    restored = ek.load_compressed(net(), path)
    assert type(restored[3]) is type(model[3])
    assert getattr(restored[3], "is_frozen", True)
    assert getattr(restored[3], "scale_activations", False) == options.get("scale_activations",
                                                                           False)
    with torch.no_grad():
        assert torch.equal(restored(x), expected)


def test_file_is_small(tmp_path):
    dense_path, packed_path = tmp_path / "dense.safetensors", tmp_path / "packed.safetensors"
    from safetensors.torch import save_file

    dense = net()
    save_file({k: v.contiguous() for k, v in dense.state_dict().items()}, dense_path)
    ek.save_compressed(ek.convert(net(), "xnor", keep_first_last=False), packed_path)
    assert os.path.getsize(packed_path) < os.path.getsize(dense_path) / 10


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        ek.load_compressed(net(), tmp_path / "nope.safetensors")


def test_not_ours(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(2)}, path)
    with pytest.raises(ValueError, match="save_compressed"):
        ek.load_compressed(net(), path)


def test_wrong_architecture(tmp_path):
    path = tmp_path / "model.safetensors"
    ek.save_compressed(ek.convert(net(), "bwn"), path)
    with pytest.raises(ValueError, match="does not match the model's layers"):
        ek.load_compressed(nn.Sequential(nn.Linear(2, 2)), path)


def test_tied_weights_round_trip(tmp_path):
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 4))
    model[2].weight = model[1].weight
    ek.convert(model, "bwn", filter_fn=lambda name, m: name == "2")
    ek.save_compressed(model, tmp_path / "m.safetensors")
    x = torch.randn(3, 64)
    fresh = nn.Sequential(*[nn.Linear(64, 64) for _ in range(3)], nn.Linear(64, 4))
    with torch.no_grad():
        assert torch.equal(ek.load_compressed(fresh, tmp_path / "m.safetensors")(x), model(x))


def test_failed_save_keeps_existing_file(tmp_path, monkeypatch):
    import emokernels.files as files

    path = tmp_path / "model.safetensors"
    ek.save_compressed(ek.convert(net(), "bwn"), path)
    before = path.read_bytes()

    def broken_save(state, filename, metadata):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(files, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ek.save_compressed(ek.convert(net(), "xnor"), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def round_trip(model: nn.Module, fresh: nn.Module, path, x: torch.Tensor) -> tuple:
    """Saves eval ``model`` to ``path``, loads the file into ``fresh`` and checks that it
    computes exactly ``model``'s output on ``x``; returns the restored model, the file's tensor
    names and its layer table."""
    from safetensors import safe_open

    with torch.no_grad():
        expected = model(x)
    ek.save_compressed(model, path)
    restored = ek.load_compressed(fresh, path)
    with torch.no_grad():
        assert torch.equal(restored(x), expected)
    with safe_open(str(path), framework="pt") as f:
        return restored, set(f.keys()), json.loads(f.metadata()["emokernels.layers"])


def snapshot(model: nn.Module) -> dict:
    """The model's modules (by identity) and a copy of its state."""
    return {"modules": [(n, id(m)) for n, m in model.named_modules()],
            "state": {k: v.clone() for k, v in model.state_dict().items()}}


def assert_load_rejected(path, target: nn.Module, message: str) -> None:
    """load_compressed(target, path) is a ValueError matching message that leaves target as
    it was (all or nothing)."""
    before = snapshot(target)
    with pytest.raises(ValueError, match=message):
        ek.load_compressed(target, path)
    assert_unchanged(target, before)


def assert_unchanged(model: nn.Module, before: dict) -> None:
    assert [(n, id(m)) for n, m in model.named_modules()] == before["modules"]
    state = model.state_dict()
    assert state.keys() == before["state"].keys()
    assert all(torch.equal(state[k], v) for k, v in before["state"].items())


@pytest.mark.parametrize("make_target, message", [
    (lambda: ek.convert(net(), "xnor", keep_first_last=False), "is XnorConv2d in the model"),
    (lambda: ek.convert(net(), "bwn"), "is BinaryConv2d in the model but XnorConv2d"),
    (lambda: ek.convert(net(), "xnor", scale_activations=True), "options"),
    (lambda: nn.Sequential(*list(net())[:-1], nn.Linear(128, 9)), r"\[9, 128\]"),
    (lambda: nn.Sequential(*list(net())[:3]), "only in the file"),
])
def test_mismatched_architecture_is_an_error_and_changes_nothing(tmp_path, make_target,
                                                                  message):
    path = tmp_path / "m.safetensors"
    ek.save_compressed(ek.convert(net(), "xnor"), path)
    assert_load_rejected(path, make_target(), message)


def rewrite(path, transform_state=None, transform_meta=None):
    """Rewrites a saved file with its tensors and / or metadata changed."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from emokernels.files import tensor_digest

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    state = load_file(path)
    if transform_state:
        state = transform_state(state)
        meta["emokernels.sha256"] = tensor_digest(state)  # only the change under test is wrong
    save_file(state, path, metadata=transform_meta(meta) if transform_meta else meta)


def _set_layer(meta, name, **fields):
    import json

    table = json.loads(meta["emokernels.layers"])
    table[name].update(fields)
    return {**meta, "emokernels.layers": json.dumps(table)}


@pytest.mark.parametrize("state_change, meta_change, message", [
    (lambda s: {**s, "3.alpha": s["3.alpha"].double()}, None, "3.alpha is F64"),
    (lambda s: {**s, "3.weight_bits": s["3.weight_bits"].long()}, None, "3.weight_bits is I64"),
    (lambda s: {k: v for k, v in s.items() if k != "1.running_mean"}, None, "missing"),
    (lambda s: {**s, "extra": torch.ones(1)}, None, "unexpected"),
    (None, lambda m: _set_layer(m, "3", scale_activations="no"), "options"),
    (None, lambda m: _set_layer(m, "3", scale_activations=1), "options"),
    (None, lambda m: _set_layer(m, "3", bogus=True), "options"),
    (None, lambda m: _set_layer(m, "3", **{"class": "Ternary"}), "unknown layer class"),
    (None, lambda m: {**m, "emokernels.layers": "{not json"}, "malformed"),
    (None, lambda m: {**m, "emokernels.layers": "[1, 2]"}, "malformed"),
    (None, lambda m: {**m, "emokernels.layers": '{"3": 5}'}, "class name"),
    (None, lambda m: {**m, "emokernels.format": "1"}, "format"),
])
def test_corrupt_file_is_an_error_and_changes_nothing(tmp_path, state_change, meta_change,
                                                      message):
    path = tmp_path / "m.safetensors"
    ek.save_compressed(ek.convert(net(), "xnor", scale_activations=True), path)
    rewrite(path, state_change, meta_change)
    assert_load_rejected(path, net(), message)


def test_truncated_file_is_an_error(tmp_path):
    path = tmp_path / "m.safetensors"
    ek.save_compressed(ek.convert(net(), "bwn"), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        ek.load_compressed(net(), path)


def test_save_removes_temporaries_of_dead_saves_only(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "m.safetensors"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f"m.safetensors.emokernels-tmp-{dead}"
    live = tmp_path / f"m.safetensors.emokernels-tmp-{os.getppid()}"  # a running writer
    other = tmp_path / "other.safetensors.emokernels-tmp-1"
    for p in (stale, live, other):
        p.write_bytes(b"x" * 1000)
    ek.save_compressed(ek.convert(net(), "bwn"), path)
    assert not stale.exists() and live.exists() and other.exists()


@pytest.mark.parametrize("seed", range(3))
def test_flipped_bit_is_an_error_and_changes_nothing(tmp_path, seed):
    path = tmp_path / "m.safetensors"
    ek.save_compressed(ek.convert(net(), "xnor"), path)
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")  # tensor bytes follow the JSON header
    g = torch.Generator().manual_seed(seed)
    data[int(torch.randint(start, len(data), (), generator=g))] ^= 1 << int(
        torch.randint(8, (), generator=g))
    path.write_bytes(bytes(data))
    target = net()
    before = snapshot(target)
    with pytest.raises(ValueError, match="sha256"):
        ek.load_compressed(target, path)
    assert_unchanged(target, before)
