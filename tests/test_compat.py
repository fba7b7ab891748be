"""Runs trained by an earlier momentlens still load, predict identically and resume.

The run folders in ``tests/fixtures/runs_v0_1`` were written by momentlens 0.1.0 (commit
e161e02), before the input record carried its mean and std and before the training
schedule moved to ``torch.optim.lr_scheduler``; their predictions then are stored beside
them (see that folder's README).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from momentlens.cli import main
from momentlens.engine.checkpoint import load_model
from momentlens.engine.predict import predict
from momentlens.models.spec import InputSpec

FIXTURES = Path(__file__).parent / "fixtures" / "runs_v0_1"
RUNS = ("r3d10", "r2d18")


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("clips", [1, 2])
def test_old_run_predicts_as_it_did(run, clips, monkeypatch):
    monkeypatch.chdir(FIXTURES)  # the stored output names the videos relative to it
    expected = json.loads((FIXTURES / f"{run}.predict_clips{clips}.json").read_text())
    got = predict(run, ["videos"], topk=5, clips=clips, device="cpu", precision="fp32")
    assert [Path(g["video"]).name for g in got] == [Path(e["video"]).name for e in expected]
    for g, e in zip(got, expected):
        assert [t["class"] for t in g["top"]] == [t["class"] for t in e["top"]]
        for gt, et in zip(g["top"], e["top"]):
            assert gt["prob"] == pytest.approx(et["prob"], abs=2e-6)


@pytest.mark.parametrize("run", RUNS)
def test_old_record_reads_into_the_typed_record(run):
    model, meta = load_model(FIXTURES / run, "cpu")
    spec = model.input_spec
    assert isinstance(spec, InputSpec)
    assert "mean" not in meta["input"]  # the old record, as written then
    assert spec == InputSpec.from_dict(meta["input"])
    assert (spec.frames, spec.size, spec.resize) == (4, 32, 37)
    assert spec.sampler == ("clip" if run == "r3d10" else "segments")
    assert spec.stride == 2
    # The preset fills in what the old record left implicit.
    assert spec.mean == InputSpec(sampler="clip", frames=1, size=1, norm=spec.norm).mean


def _class_folder_data(root: Path, classes: list[str]) -> Path:
    videos = sorted((FIXTURES / "videos").glob("*.mp4"))
    for split in ("training", "validation"):
        for cls in classes:
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i, video in enumerate(videos * 2):
                shutil.copy(video, folder / f"{cls}-{i}.mp4")
    return root


def test_old_run_resumes(tmp_path):
    run = shutil.copytree(FIXTURES / "r3d10", tmp_path / "run")
    _, meta = load_model(run, "cpu")
    data = _class_folder_data(tmp_path / "data", list(meta["classes"]))
    rc = main(["train", "--resume", str(run), "--data", str(data), "--epochs", "2",
               "--workers", "0"])
    assert rc == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert (run / "checkpoints" / "last.txt").read_text().startswith("e0002-")
    model, meta = load_model(run, "cpu")
    assert meta["epoch"] == 2
    assert model.input_spec.mean is not None and "mean" in meta["input"]
