import pytest
import torch

from emokernels.cli import main


def _best_isa(monkeypatch) -> str:
    monkeypatch.delenv("EMOKERNELS_CPU_ISA", raising=False)
    return torch.ops.emokernels.cpu_isa()


@pytest.mark.parametrize("value", ["foo", "AVX2", " avx2", "avx2 ", "avx-512"])
def test_info_reports_an_unknown_cpu_isa(monkeypatch, capsys, value):
    monkeypatch.setenv("EMOKERNELS_CPU_ISA", value)
    assert main(["info"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"EMOKERNELS_CPU_ISA={value} is not one of" in err
    assert "must be one of auto, avx512, avx2, portable" in err


def test_info_reports_a_cpu_isa_this_cpu_lacks(monkeypatch, capsys):
    best = _best_isa(monkeypatch)
    lacking = {"portable": ["avx2", "avx512"], "avx2": ["avx512"]}.get(best, [])
    if not lacking:
        pytest.skip(f"this CPU runs every path ({best})")
    for value in lacking:
        monkeypatch.setenv("EMOKERNELS_CPU_ISA", value)
        assert main(["info"]) == 2
        out, err = capsys.readouterr()
        assert out == "" and f"EMOKERNELS_CPU_ISA={value} asks for a path" in err
        assert f"best here: {best}" in err


def test_info_shows_the_forced_cpu_path(monkeypatch, capsys):
    best = _best_isa(monkeypatch)
    assert main(["info"]) == 0
    assert f"cpu path: {best} " in capsys.readouterr().out
    monkeypatch.setenv("EMOKERNELS_CPU_ISA", "portable")
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "cpu path: portable " in out and "EMOKERNELS_CPU_ISA=auto|avx512|avx2|portable" in out


@pytest.mark.parametrize("spec, message", [
    ("imagenet:/x", "unknown data source 'imagenet'"),
    ("Synthetic", "unknown data source 'Synthetic'"),
    ("rafd", "data spec 'rafd' needs a path: rafd:PATH"),
    ("fer2013:", "data spec 'fer2013:' needs a path"),
    ("folder:{tmp}/missing", "{tmp}/missing not found"),
])
def test_reproduce_refuses_a_bad_data_spec(tmp_path, capsys, spec, message):
    spec, message = (s.format(tmp=tmp_path) for s in (spec, message))
    with pytest.raises(SystemExit) as exit_:
        main(["reproduce", "table2", "--quick", "--data", spec, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --data: " + message in err
    assert not (tmp_path / "out").exists()


def _captured_settings(monkeypatch, argv):
    import emokernels.experiments.table2 as table2
    import emokernels.experiments.table3 as table3

    seen = {}
    for module, name in ((table2, "run_table2"), (table3, "run_table3")):
        monkeypatch.setattr(module, name,
                            lambda settings, out: seen.update(settings=settings, out=out))
    assert main(argv) == 0
    return seen


def test_reproduce_table3_parses_teachers_and_unlabelled_data(tmp_path, monkeypatch, capsys):
    keras = tmp_path / "teacher.hdf5"
    keras.write_bytes(b"")
    (tmp_path / "faces").mkdir()
    seen = _captured_settings(monkeypatch, [
        "reproduce", "table3", "--quick", "--teacher", "fer", "--teacher", str(keras),
        "--unlabelled", f"folder:{tmp_path / 'faces'}", "--epochs", "3"])
    settings = seen["settings"]
    assert settings.teachers == ("fer", str(keras)) and settings.epochs == 3
    assert settings.unlabelled == f"folder:{tmp_path / 'faces'}" and settings.train_size == 64
    assert seen["out"] == "table3_out"
    assert "wrote table3.json, table3.csv and table3.png to table3_out/" in capsys.readouterr().out
    # without --quick: the full settings, both teachers
    seen = _captured_settings(monkeypatch, ["reproduce", "table3", "--out", str(tmp_path)])
    assert seen["settings"].teachers == ("vgg_s", "fer") and seen["settings"].train_size == 224
    assert seen["settings"].unlabelled == "synthetic" and seen["out"] == str(tmp_path)


@pytest.mark.parametrize("args, message", [
    (["table3", "--teacher", "vgg"], "argument --teacher: 'vgg' is not vgg_s, fer or an existing "
                                     "file"),
    (["table3", "--unlabelled", "pubfig"], "argument --unlabelled: unknown unlabelled data"),
    (["table3", "--unlabelled", "folder:{tmp}/missing"], "{tmp}/missing is not a folder"),
    (["table2", "--teacher", "fer"], "--teacher and --unlabelled apply to table3 only"),
    (["table2", "--quick", "--tiny"], "--tiny applies to table2 alone, instead of --quick"),
    (["table3", "--tiny"], "--tiny applies to table2 alone"),
    (["table3", "--methods", "bwn"], "--methods applies to table2 only"),
    (["table2", "--methods", "vgg_s,ternary"], "unknown methods ['ternary']"),
    (["table2", "--methods", "bwn"], "need their baselines ['vgg_s']"),
])
def test_reproduce_table3_refuses_bad_arguments(tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    with pytest.raises(SystemExit) as exit_:
        main(["reproduce", *args, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert message.format(tmp=tmp_path) in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_reproduce_table2_settings_from_the_command_line(tmp_path, monkeypatch):
    seen = _captured_settings(monkeypatch, ["reproduce", "table2", "--quick", "--methods",
                                            "vgg_s,hashed_block16", "--out", str(tmp_path)])
    assert seen["settings"].methods == ("vgg_s", "hashed_block16")
    assert seen["settings"].train_size == 48 and seen["settings"].method_epochs
    # --epochs then applies to every row
    seen = _captured_settings(monkeypatch, ["reproduce", "table2", "--quick", "--epochs", "2",
                                            "--out", str(tmp_path)])
    assert seen["settings"].epochs == 2 and seen["settings"].method_epochs == {}
    assert len(seen["settings"].methods) == 7
    seen = _captured_settings(monkeypatch, ["reproduce", "table2", "--tiny", "--out",
                                            str(tmp_path)])
    assert seen["settings"].identities == 3 and seen["settings"].epochs == 1
