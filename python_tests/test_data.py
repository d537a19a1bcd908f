import csv
import os

import numpy as np
import pytest
import torch
from PIL import Image

from emokernels.data import FER2013, RAFD_CLASSES, RaFD, SyntheticFaces, load_splits
from emokernels.data.in_memory import InMemory


def test_synthetic_is_deterministic_and_identity_disjoint():
    a, b = SyntheticFaces("train", identities=10, image_size=32), SyntheticFaces(
        "train", identities=10, image_size=32, cache=False)
    assert torch.equal(a[5][0], b[5][0]) and a[5][1] == b[5][1]
    splits = [set(SyntheticFaces(s, identities=10).identities) for s in ("train", "val", "test")]
    assert not (splits[0] & splits[1] or splits[0] & splits[2] or splits[1] & splits[2])
    assert set().union(*splits) == set(range(10))
    assert len(SyntheticFaces("all", identities=67)) == 67 * 8 * 3 * 3


def test_synthetic_images_vary_and_labels_cover_classes():
    ds = SyntheticFaces("test", identities=20, image_size=40)
    image, _ = ds[0]
    assert image.shape == (3, 40, 40) and 0.0 <= image.min() and image.max() <= 1.0
    assert not torch.equal(ds[0][0], ds[1][0])
    assert sorted(set(ds.targets)) == list(range(8)) and ds.classes == RAFD_CLASSES


def test_synthetic_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        SyntheticFaces("holdout")
    with pytest.raises(ValueError, match="angles"):
        SyntheticFaces(angles=(30,))


def _write_rafd(root, ids=4, emotion_override=None):
    for ident in range(1, ids + 1):
        for angle in ("045", "090", "180"):
            for emotion in ("angry", "happy", "surprised"):
                emotion = emotion_override or emotion
                name = f"Rafd{angle}_{ident:02d}_Caucasian_female_{emotion}_left.jpg"
                Image.fromarray(np.full((20, 16, 3), ident * 20, np.uint8)).save(root / name)
    (root / "readme.txt").write_text("not an image")


def test_rafd_reads_angles_and_splits_by_identity(tmp_path):
    _write_rafd(tmp_path, ids=7)
    full = RaFD(tmp_path)
    assert len(full) == 7 * 2 * 3  # 180 dropped by the default angles
    assert full.classes[full[0][1]] in ("angry", "happy", "surprised")
    parts = [RaFD(tmp_path, split=s) for s in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == len(full)
    owners = [{os.path.basename(path).split("_")[1] for path, _ in p.samples} for p in parts]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])


def test_rafd_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        RaFD(tmp_path / "missing")
    _write_rafd(tmp_path, ids=1, emotion_override="bored")
    with pytest.raises(ValueError, match="bored"):
        RaFD(tmp_path)


@pytest.mark.parametrize("ids", [1, 2])
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_rafd_splits_need_three_identities(tmp_path, ids, split):
    _write_rafd(tmp_path, ids=ids)
    with pytest.raises(ValueError, match=f"found {ids} RaFD identities.*split='all' works"):
        RaFD(tmp_path, split=split)
    assert len(RaFD(tmp_path, split="all")) == ids * 2 * 3


@pytest.mark.parametrize("ids", [3, 4, 5, 9])
def test_rafd_no_split_is_empty(tmp_path, ids):
    _write_rafd(tmp_path, ids=ids)
    for seed in np.random.default_rng(ids).integers(0, 2**31, 3):
        parts = [RaFD(tmp_path, split=s, seed=int(seed)) for s in ("train", "val", "test")]
        assert all(len(p) > 0 for p in parts) and sum(map(len, parts)) == ids * 2 * 3


def test_rafd_unreadable_image_names_file(tmp_path):
    bad = tmp_path / "Rafd090_01_Caucasian_male_happy_frontal.jpg"
    bad.write_bytes(b"not a jpeg")
    ds = RaFD(tmp_path)
    with pytest.raises(OSError, match="Rafd090_01"):
        ds[0]


def _write_fer(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["emotion", "pixels", "Usage"])
        writer.writerows(rows)


def test_fer2013(tmp_path):
    rng = np.random.default_rng(0)
    rows = [[i % 7, " ".join(map(str, rng.integers(0, 256, 2304))), usage]
            for i, usage in enumerate(["Training"] * 5 + ["PublicTest"] * 2)]
    _write_fer(tmp_path / "fer.csv", rows)
    train = FER2013(tmp_path / "fer.csv")
    assert len(train) == 5 and train.targets == [0, 1, 2, 3, 4]
    image, label = train[2]
    assert image.size == (48, 48) and label == 2
    assert np.array_equal(np.asarray(image)[..., 0].ravel(),
                          np.array(rows[2][1].split(), dtype=np.uint8))
    assert len(FER2013(tmp_path / "fer.csv", usage="PublicTest")) == 2


@pytest.mark.parametrize("row, message", [
    ([9, " ".join(["1"] * 2304), "Training"], "unknown emotion label 9"),
    ([1, " ".join(["1"] * 100), "Training"], "expected 2304 pixels"),
    ([1, "a b c", "Training"], "fer.csv:2"),
])
def test_fer2013_errors(tmp_path, row, message):
    _write_fer(tmp_path / "fer.csv", [row])
    with pytest.raises(ValueError, match=message):
        FER2013(tmp_path / "fer.csv")


def _fer_row(rng: np.random.Generator, usage: str = "Training") -> list:
    return [int(rng.integers(7)), " ".join(map(str, rng.integers(0, 256, 2304))), usage]


@pytest.mark.parametrize("value, message", [
    (256, "pixel values must be in 0..255, got 0..256"),
    (-1, "pixel values must be in 0..255, got -1..255"),
    (70000, "pixel values must be in 0..255"),
    (10**30, "too large"),
])
def test_fer2013_pixel_out_of_range_names_line(tmp_path, value, message):
    rng = np.random.default_rng(value % 1000)
    rows = [_fer_row(rng) for _ in range(3)]
    pixels = rows[1][1].split()
    pixels[:2] = ["0", "255"]  # the rest spans 0..255: the message's range is the bad value's
    pixels[rng.integers(2, len(pixels))] = str(value)
    rows[1][1] = " ".join(pixels)
    _write_fer(tmp_path / "fer.csv", rows)
    with pytest.raises(ValueError, match=f"fer.csv:3: .*{message}"):
        FER2013(tmp_path / "fer.csv")


@pytest.mark.parametrize("usage", ["training", " Training", "Training ", "", "Validation"])
def test_fer2013_unknown_usage_names_line(tmp_path, usage):
    rng = np.random.default_rng(len(usage))
    rows = [_fer_row(rng, "PublicTest"), _fer_row(rng), _fer_row(rng, usage)]
    _write_fer(tmp_path / "fer.csv", rows)
    with pytest.raises(ValueError, match=f"fer.csv:4: Usage '{usage}' is not one of"):
        FER2013(tmp_path / "fer.csv", usage="PublicTest")  # not even the usage asked for


@pytest.mark.parametrize("fields", [2, 4])
def test_fer2013_wrong_field_count_names_line(tmp_path, fields):
    rows = [_fer_row(np.random.default_rng(fields)) for _ in range(3)]
    rows[1] = (rows[1] + ["extra"])[:fields]
    _write_fer(tmp_path / "fer.csv", rows)
    with pytest.raises(ValueError, match="fer.csv:3: expected 3 fields"):
        FER2013(tmp_path / "fer.csv")


def test_fer2013_line_numbers_count_blank_lines(tmp_path):
    rng = np.random.default_rng(5)
    good, bad = (",".join(map(str, _fer_row(rng))) for _ in range(2))
    path = tmp_path / "fer.csv"
    path.write_text(f"emotion,pixels,Usage\n\n{good}\n\n\n9{bad[1:]}\n")  # label 9 on line 6
    with pytest.raises(ValueError, match="fer.csv:6: unknown emotion label 9"):
        FER2013(path)


@pytest.mark.parametrize("usages, asked", [([], "Training"),
                                           (["PublicTest", "PrivateTest"], "Training"),
                                           (["Training"] * 2, ("PublicTest", "PrivateTest"))])
def test_fer2013_no_rows_for_the_usage(tmp_path, usages, asked):
    rng = np.random.default_rng(len(usages))
    _write_fer(tmp_path / "fer.csv", [_fer_row(rng, u) for u in usages])
    with pytest.raises(ValueError, match=r"fer.csv: no rows with Usage in \("):
        FER2013(tmp_path / "fer.csv", usage=asked)


def test_load_splits_folder_and_errors(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(10):
            Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    train, val, test, classes = load_splits(f"folder:{tmp_path}", 16)
    assert classes == ("a", "b") and len(train) + len(val) + len(test) == 20
    assert train[0][0].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="unknown data source"):
        load_splits("imagenet:/x", 16)
    with pytest.raises(ValueError, match="needs a path"):
        load_splits("rafd", 16)


def test_synthetic_unlabelled_identities_are_disjoint_from_the_labelled_ones():
    from emokernels.data.unlabelled import load_unlabelled

    labelled = SyntheticFaces("all", identities=6, image_size=24)
    unlabelled = SyntheticFaces("all", identities=3, image_size=24, first_identity=6)
    assert unlabelled.identities == [6, 7, 8] and not set(unlabelled.identities) & set(
        labelled.identities)
    # an identity is the same face whichever set renders it
    wider = SyntheticFaces("all", identities=9, image_size=24)
    index = wider.samples.index(unlabelled.samples[0])
    assert torch.equal(wider[index][0], unlabelled[0][0])
    images = load_unlabelled("synthetic", 24, identities=2, first_identity=6)
    assert len(images) == 2 * 72
    image = images[0]  # a bare image, no label, normalized like the labelled splits
    assert isinstance(image, torch.Tensor) and image.shape == (3, 24, 24)
    assert image.min() >= -1 and image.max() <= 1 and image.min() < 0
    with pytest.raises(ValueError, match="first_identity"):
        SyntheticFaces("all", identities=3, first_identity=-1)
    with pytest.raises(ValueError, match="at least 3 identities for split='train'"):
        SyntheticFaces("train", identities=2)


def test_unlabelled_image_folder(tmp_path):
    from emokernels.data.unlabelled import ImageFiles, load_unlabelled

    for i, sub in enumerate(("b", "a/deeper", "a")):
        os.makedirs(tmp_path / sub, exist_ok=True)
        Image.new("RGB", (30, 20), (80 * i, 0, 0)).save(tmp_path / sub / f"face{i}.png")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    images = load_unlabelled(f"folder:{tmp_path}", 16)
    assert [os.path.relpath(p, tmp_path) for p in images.paths] == [
        "a/deeper/face1.png", "a/face2.png", "b/face0.png"]
    assert images[2].shape == (3, 16, 16) and torch.allclose(images[2][0], torch.tensor(-1.0))
    assert ImageFiles(tmp_path)[0].size == (30, 20)  # no transform: the PIL image
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        ImageFiles(empty)
    with pytest.raises(FileNotFoundError, match="not found"):
        ImageFiles(tmp_path / "missing")
    for spec in ("pubfig", "folder:", "synthetic:x"):
        with pytest.raises(ValueError, match="unknown unlabelled data"):
            load_unlabelled(spec, 16)


def test_in_memory_splits_hold_the_decoded_images():
    splits = load_splits("synthetic", 24, seed=3, identities=4)
    held = load_splits("synthetic", 24, seed=3, identities=4, in_memory=True)
    assert held[3] == splits[3]
    for lazy, kept in zip(splits[1:3], held[1:3], strict=True):  # val, test: no augmentation
        assert isinstance(kept, InMemory) and len(kept) == len(lazy)
        assert kept.images.shape == (len(lazy), 3, 24, 24) and kept.images.dtype == torch.float32
        for i in (0, len(lazy) // 2, len(lazy) - 1):
            assert torch.equal(kept[i][0], lazy[i][0]) and kept[i][1] == lazy[i][1]
    # no flips of the synthetic faces (their poses and gazes are mirrored already)
    assert not held[0].flip and len(held[0]) == len(splits[0])
    assert torch.equal(held[0][7][0], held[0].images[7])
    # flips draw from the global generator as torchvision's do
    train = InMemory(splits[1], flip=True)
    torch.manual_seed(0)
    first = [train[i][0] for i in range(40)]
    torch.manual_seed(0)
    assert all(torch.equal(a, train[i][0]) for i, a in enumerate(first))
    flipped = [torch.equal(first[i], train.images[i].flip(-1)) for i in range(40)]
    kept_as_is = [torch.equal(first[i], train.images[i]) for i in range(40)]
    assert any(flipped) and any(kept_as_is) and all(map(any, zip(flipped, kept_as_is,
                                                                 strict=True)))


def test_in_memory_refuses_what_it_cannot_stack():
    with pytest.raises(ValueError, match="empty"):
        InMemory(torch.utils.data.TensorDataset(torch.zeros(0, 3, 4, 4), torch.zeros(0)))
    mixed = [(torch.rand(3, 4, 4), 0), (torch.rand(3, 5, 4), 1)]
    with pytest.raises(ValueError, match="share a shape"):
        InMemory(mixed)
