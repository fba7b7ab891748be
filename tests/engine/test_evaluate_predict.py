"""`evaluate`, `predict` and `compare` on real (tiny) models and real mp4 files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from momentlens.analysis.evalio import read_evaluation
from momentlens.cli import main
from momentlens.data import synth
from momentlens.engine.checkpoint import load_model
from momentlens.engine.evaluate import MultiViewDataset, evaluate
from momentlens.engine.predict import predict
from momentlens.models.spec import InputSpec

CLASSES = ["ring", "square", "falling", "rising"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("evaldata") / "ds"
    synth.generate(out, train_per_class=1, val_per_class=3, size=48, num_frames=30,
                   seed=3, workers=1, classes=CLASSES)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory, write_model_file) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("models")
    tiny = {"size": 32, "width": 0.125, "stride": 2}
    return {"3d": write_model_file(tmp / "m3d", CLASSES, 0, model="r3d10", frames=8, **tiny),
            "2d": write_model_file(tmp / "m2d", CLASSES, 1, model="r2d18", frames=4, **tiny)}


def test_model_file_round_trip(models):
    model, meta = load_model(models["3d"])
    assert meta["classes"] == CLASSES and meta["input"]["sampler"] == "clip"
    again, _ = load_model(models["3d"].parent)  # a checkpoint folder works too
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_evaluate_writes_every_file_and_is_repeatable(tmp_path, data, models):
    # device="cpu": the by-hand check below runs on the CPU (on a GPU, cuDNN's TF32
    # convolutions differ from it by ~1e-3 relative; tests/test_cuda.py covers CUDA).
    # precision="fp32": the by-hand check is eager fp32 (the default may be bf16).
    a = evaluate(models["3d"], data, tmp_path / "a", workers=0, device="cpu", precision="fp32")
    b = evaluate(models["3d"], data, tmp_path / "b", workers=0, device="cpu", precision="fp32")
    for name in ["metrics.json", "per_class.csv", "confusions.csv", "predictions.csv",
                 "scores.npz", "per_class.png", "top5_hist.png", "confusion.png"]:
        assert (tmp_path / "a" / name).is_file(), name
    assert (tmp_path / "a" / "metrics.json").read_bytes() == \
        (tmp_path / "b" / "metrics.json").read_bytes()
    assert a == b
    assert a["num_videos"] == a["num_scored"] == a["num_listed"] == 12
    # The written scores are the model's own: recompute one video by hand.
    ev = read_evaluation(tmp_path / "a")
    model, meta = load_model(models["3d"])
    rel = ev.paths[0]
    ds = MultiViewDataset([type("R", (), {"path": data / rel, "label": 0,
                                          "extra": {}})()],
                          sampler="clip", frames=8, stride=2, size=32,
                          resize=meta["input"]["resize"])
    clip, _, _ = ds[0]
    from momentlens.engine.inference import Normalizer

    with torch.no_grad():
        probs = torch.softmax(model(Normalizer(InputSpec.from_dict(meta["input"]))(clip[None])), 1)[0]
    np.testing.assert_allclose(ev.probs[0], probs.numpy(), rtol=1e-4, atol=1e-6)


def test_clips_and_crops_average_views(tmp_path, data, models):
    from momentlens.engine.inference import Normalizer

    m = evaluate(models["3d"], data, tmp_path / "e", clips=2, crops=3, workers=0,
                 device="cpu", precision="fp32")
    assert m["clips"] == 2 and m["crops"] == 3
    model, meta = load_model(models["3d"])
    records = load_split_records(data)
    ds = MultiViewDataset(records, sampler="clip", frames=8, stride=2, size=32,
                          resize=meta["input"]["resize"], num_clips=2, crops=3)
    clips, _, _ = ds[0]
    assert clips.shape == (6, 3, 8, 32, 32)
    assert not torch.equal(clips[0], clips[2])  # left and right crops differ
    assert not torch.equal(clips[0], clips[3])  # so do the two clips in time
    with torch.no_grad():
        views = torch.softmax(model(Normalizer(InputSpec.from_dict(meta["input"]))(clips)), 1)
    ev = read_evaluation(tmp_path / "e")
    rel = records[0].path.relative_to(data).as_posix()
    row = ev.paths.index(rel)
    np.testing.assert_allclose(ev.probs[row], views.mean(0).numpy(), rtol=1e-4, atol=1e-6)


def load_split_records(data: Path):
    from momentlens.data.layout import load_split

    return load_split(data, "validation").records


def test_unreadable_videos_are_counted_not_dropped(tmp_path, data, models):
    broken = tmp_path / "ds"
    shutil.copytree(data, broken)
    victim = sorted((broken / "validation" / "ring").glob("*.mp4"))[0]
    victim.write_bytes(b"this is not a video")
    m = evaluate(models["2d"], broken, tmp_path / "e", workers=0)
    assert m["num_listed"] == 12 and m["num_scored"] == 11
    assert m["num_unreadable"] == 1
    assert m["unreadable"] == [f"validation/ring/{victim.name}"]
    assert m["per_class"]["ring"]["n"] == 2


def test_compare_2d_and_3d_cli(tmp_path, data, models, capsys):
    assert main(["evaluate", str(models["2d"]), "--data", str(data), "--out",
                 str(tmp_path / "e2"), "--workers", "0"]) == 0
    assert main(["evaluate", str(models["3d"]), "--data", str(data), "--out",
                 str(tmp_path / "e3"), "--workers", "0"]) == 0
    assert main(["compare", str(tmp_path / "e2"), str(tmp_path / "e3"), "--out",
                 str(tmp_path / "cmp")]) == 0
    comp = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    m2 = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    m3 = json.loads((tmp_path / "e3" / "metrics.json").read_text())
    assert comp["overall"]["top1"]["a"] == pytest.approx(m2["top1"])
    assert comp["overall"]["top1"]["diff"] == pytest.approx(m3["top1"] - m2["top1"])
    both = comp["mcnemar_top1"]
    assert both["b"] + both["c"] + both["both_correct"] + both["both_wrong"] == 12
    assert list((tmp_path / "cmp").glob("*.png"))


def test_predict_formats_like_the_paper(tmp_path, data, models, capsys):
    video = sorted((data / "validation" / "falling").glob("*.mp4"))[0]
    assert main(["predict", str(models["3d"]), str(video), "--topk", "3"]) == 0
    out = capsys.readouterr().out
    assert str(video) in out
    line = out.strip().splitlines()[1].strip()  # then "scored 1 clip of ... s out of ... s"
    assert out.strip().splitlines()[-1].strip().startswith("scored 1 clip of ")
    assert line.startswith("1: ") and " 2: " in line and " 3: " in line and " 4: " not in line
    results = predict(models["3d"], [video], topk=3)
    probs = [t["prob"] for t in results[0]["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    assert f"1: {results[0]['top'][0]['class']} ({probs[0]:.3f})" in line


def test_predict_folder_json_and_bad_file(tmp_path, data, models, capsys):
    folder = tmp_path / "vids"
    shutil.copytree(data / "validation" / "ring", folder)
    (folder / "broken.mp4").write_bytes(b"")
    rc = main(["predict", str(models["2d"]), str(folder), "--json"])
    results = json.loads(capsys.readouterr().out)
    assert rc == 1  # one video could not be read
    assert len(results) == 4
    bad = [r for r in results if "error" in r]
    assert len(bad) == 1 and bad[0]["video"].endswith("broken.mp4")
    good = [r for r in results if "top" in r]
    assert all(len(r["top"]) == 4 for r in good)  # only 4 classes
    assert main(["predict", str(models["2d"]), str(tmp_path / "nope.mp4")]) == 2


def test_evaluate_under_torchrun_shares_the_videos_and_writes_once(tmp_path, data, models):
    # Two processes over gloo, a loader worker each, one unreadable video: the same folder
    # as one process writes, written by rank 0 alone, reported once.
    import os
    import subprocess
    import sys

    broken = tmp_path / "ds"
    shutil.copytree(data, broken)
    victim = sorted((broken / "validation" / "falling").glob("*.mp4"))[1]
    victim.write_bytes(b"this is not a video")
    one = evaluate(models["3d"], broken, tmp_path / "one", workers=1, device="cpu",
                   precision="fp32")
    env = dict(os.environ, OMP_NUM_THREADS="1", MOMENTLENS_QUIET="1")
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "momentlens", "evaluate", str(models["3d"]), "--data", str(broken), "--out",
         str(tmp_path / "two"), "--workers", "1", "--device", "cpu", "--precision", "fp32",
         "--no-plots"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("wrote ") == 1 and done.stdout.count("videos scored") == 1, done.stderr
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["unreadable"] == [f"validation/falling/{victim.name}"]
    assert {k: v for k, v in two.items() if k != "cam"} == \
        {k: v for k, v in one.items() if k != "cam"}
    assert (tmp_path / "two" / "predictions.csv").read_bytes() == \
        (tmp_path / "one" / "predictions.csv").read_bytes()


def test_predict_under_torchrun_shares_the_videos_and_prints_once(tmp_path, data, models):
    # Two processes over gloo, a loader worker each, 12 videos and an unreadable one, with
    # --timeline: rank 0 alone prints, every result as one process gives it and in its
    # order, and each readable video's timeline is written by the rank that scored it.
    import os
    import subprocess
    import sys

    from momentlens.engine.predict import collect_videos

    folder = tmp_path / "vids"
    shutil.copytree(data / "validation", folder)
    (folder / "ring" / "broken.mp4").write_bytes(b"this is not a video")
    one = predict(models["3d"], [folder], device="cpu", precision="fp32")
    env = dict(os.environ, OMP_NUM_THREADS="1", MOMENTLENS_QUIET="1")
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "momentlens", "predict", str(models["3d"]), str(folder), "--json", "--workers",
         "1", "--device", "cpu", "--precision", "fp32", "--timeline", "--out",
         str(tmp_path / "timelines")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr  # the unreadable video, reported by rank 0
    two = json.loads(done.stdout)  # one JSON document: the other rank printed nothing
    assert [r["video"] for r in two] == [str(v) for v in collect_videos([folder])]
    assert [{k: v for k, v in r.items() if k != "timeline"} for r in two] == one
    readable = [r for r in two if "error" not in r]
    assert len(readable) == 12 and all(r["timeline"]["windows"] >= 1 for r in readable)
    assert sorted(p.name for p in (tmp_path / "timelines").iterdir()) == sorted(
        f"{Path(r['video']).stem}.timeline.{ext}" for r in readable for ext in ("csv", "png"))
