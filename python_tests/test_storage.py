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
    expected = model(x)
    path = tmp_path / "model.safetensors"
    ek.save_compressed(model, path)
    restored = ek.load_compressed(net(), path)
    assert type(restored[3]) is type(model[3])
    assert getattr(restored[3], "is_frozen", True)
    assert getattr(restored[3], "scale_activations", False) == options.get("scale_activations",
                                                                           False)
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
    with pytest.raises(ValueError, match="lacks"):
        ek.load_compressed(nn.Sequential(nn.Linear(2, 2)), path)


def test_tied_weights_round_trip(tmp_path):
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 4))
    model[2].weight = model[1].weight
    ek.convert(model, "bwn", filter_fn=lambda name, m: name == "2")
    ek.save_compressed(model, tmp_path / "m.safetensors")
    x = torch.randn(3, 64)
    fresh = nn.Sequential(*[nn.Linear(64, 64) for _ in range(3)], nn.Linear(64, 4))
    assert torch.equal(ek.load_compressed(fresh, tmp_path / "m.safetensors")(x), model(x))


def test_failed_save_keeps_existing_file(tmp_path, monkeypatch):
    import emokernels.storage as storage

    path = tmp_path / "model.safetensors"
    ek.save_compressed(ek.convert(net(), "bwn"), path)
    before = path.read_bytes()

    def broken_save(state, filename, metadata):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(storage, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ek.save_compressed(ek.convert(net(), "xnor"), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
