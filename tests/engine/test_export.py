"""ONNX export of every model family: parity with eager fp32, the record in the file,
the CLI, and predict/evaluate on ONNX Runtime."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest
import torch

from momentlens.cli import main
from momentlens.data import synth
from momentlens.engine.checkpoint import load_model
from momentlens.engine.evaluate import evaluate
from momentlens.engine.predict import predict
from momentlens.models.registry import list_models

pytest.importorskip("onnx", reason="the [onnx] extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="the [onnx] extra is not installed")

from momentlens.engine import export as X  # noqa: E402

CLASSES = ["ring", "square", "falling"]
# The smallest member of each family (registry order), at tiny widths.
FAMILIES = ("r2d", "r3d", "rx3d", "mc3d", "r2plus1d")


def _smallest(prefix: str) -> str:
    return next(m for m in list_models()
                if m.startswith(prefix) and m[len(prefix):].isdigit())


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exportdata") / "ds"
    synth.generate(out, train_per_class=1, val_per_class=2, size=40, num_frames=24,
                   seed=7, workers=1, classes=CLASSES)
    return out


@pytest.fixture(scope="module")
def r3d(tmp_path_factory, write_model_file) -> Path:
    return write_model_file(tmp_path_factory.mktemp("onnx") / "r3d", CLASSES, 3, model="r3d10",
                            frames=4, size=32, width=0.125, stride=2)


def test_every_family_is_covered():
    names = {m.rstrip("0123456789") for m in list_models()}
    assert names == set(FAMILIES), "a new family: add it to FAMILIES"


@pytest.mark.parametrize("family", FAMILIES)
def test_export_parity_every_family(tmp_path, write_model_file, family):
    name = _smallest(family)
    frames = 4
    path = write_model_file(tmp_path / name, CLASSES, 0, model=name, frames=frames, size=32,
                            width=0.125)
    model, meta = load_model(path)
    out = X.export_onnx(model, meta, tmp_path / f"{name}.onnx")
    onnx_model, read = X.load_onnx(out)
    assert read["classes"] == CLASSES and read["model"] == name
    assert onnx_model.input_spec == model.input_spec
    clips = torch.randn(3, 3, frames, 32, 32)  # batch 3: not the export's batch of 2
    result = X.parity(model, onnx_model, clips)
    assert result["relative_diff"] < 1e-4, result
    assert result["top1_agreement"] == 1.0


@pytest.mark.parametrize("options", [{"temporal_stages": 1},
                                     {"dilate": True, "last_stride": 1, "layer3_stride": 1}])
def test_architecture_options_survive_the_model_file_and_export(tmp_path, write_model_file,
                                                               options):
    path = write_model_file(tmp_path / "m", CLASSES, 0, model="r3d10", frames=4, size=32,
                            width=0.125, **options)
    model, meta = load_model(path)  # rebuilt from the options the file records
    convs = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Conv3d)}
    if "temporal_stages" in options:
        assert convs["layer2.0.conv1"].kernel_size == (1, 3, 3)
    else:
        assert convs["layer4.0.conv2"].dilation == (1, 4, 4)
    out = X.export_onnx(model, meta, tmp_path / "m.onnx")
    onnx_model, _ = X.load_onnx(out)
    result = X.parity(model, onnx_model, torch.randn(3, 3, 4, 32, 32))
    assert result["relative_diff"] < 1e-4, result


def test_metadata_makes_the_file_usable_alone(tmp_path, r3d):
    import onnx

    model, _ = load_model(r3d)
    out = X.export_onnx(model, {"classes": CLASSES, "model": "r3d10"}, tmp_path / "m.onnx")
    props = {p.key: json.loads(p.value) for p in onnx.load(str(out)).metadata_props}
    assert props["classes"] == CLASSES
    record = props["input"]
    for key in ("frames", "size", "stride", "sampler", "resize", "norm", "mean", "std"):
        assert key in record, key
    assert record["frames"] == 4 and record["size"] == 32 and len(record["mean"]) == 3
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 4, 32, 32]


def test_export_cli_checks_parity_on_real_clips(tmp_path, r3d, data, capsys):
    out = tmp_path / "model.onnx"
    rc = main(["export", str(r3d), "--format", "onnx", "--out", str(out), "--data", str(data),
               "--clips", "4"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "top-1 agreement 100.0%" in printed and "ok" in printed
    parity = json.loads(out.with_suffix(".parity.json").read_text())
    assert parity["clips"] == 4 and parity["passed"]


def test_predict_and_evaluate_on_onnxruntime(tmp_path, r3d, data, capsys):
    run = tmp_path / "run"
    run.mkdir()
    model, meta = load_model(r3d)
    X.export_onnx(model, meta, run / X.ONNX_FILE)
    videos = sorted((data / "validation").rglob("*.mp4"))
    eager = predict(r3d, videos, precision="fp32", device="cpu")
    onnx_run = predict(run, videos, backend="onnxruntime")  # a run folder holding model.onnx
    assert [r["top"][0]["class"] for r in eager] == [r["top"][0]["class"] for r in onnx_run]
    for a, b in zip(eager, onnx_run):
        for ta, tb in zip(a["top"], b["top"]):
            assert ta["prob"] == pytest.approx(tb["prob"], abs=1e-5)
    m = evaluate(run / X.ONNX_FILE, data, tmp_path / "e", workers=0, plots=False)
    assert m["backend"] == "onnxruntime" and m["precision"] == "fp32"
    assert main(["predict", str(run / X.ONNX_FILE), str(videos[0]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["class"] == \
        eager[0]["top"][0]["class"]


def test_missing_extra_is_one_line_with_the_install_hint(monkeypatch, r3d, capsys):
    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name.split(".")[0] in {"onnx", "onnxruntime"}:
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    monkeypatch.setattr("importlib.import_module", lambda name: no_onnx(name))
    assert main(["export", str(r3d), "--out", "x.onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'momentlens[onnx]'" in err
