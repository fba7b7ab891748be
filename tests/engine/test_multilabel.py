"""Multi-label (M-MiT) end to end (issue 17): multi-hot targets (also through loader
workers), BCE training, mAP against scikit-learn, and check/train/evaluate/predict/
compare/report on the synthetic M-MiT dataset."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from momentlens.analysis import metrics as M
from momentlens.analysis import multilabel as ML
from momentlens.cli import main
from momentlens.data import synth, synth_layouts
from momentlens.data.dataset import VideoDataset
from momentlens.data.layouts import load_split
from momentlens.engine.config import TrainConfig
from momentlens.engine.loop import loss_fn

sk = pytest.importorskip("sklearn.metrics")

TINY = ["--set", "model=r3d10", "--set", "width=0.0625", "--frames", "4", "--size", "32",
        "--epochs", "1", "--batch-size", "4", "--workers", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def mmit(tmp_path_factory):
    out = tmp_path_factory.mktemp("mmit") / "data"
    synth.generate(out, train_per_class=3, val_per_class=3, size=32, num_frames=8,
                   workers=1, classes=("ring", "plus+sign", "falling"))
    synth_layouts.convert(out, "mmit", workers=1)
    return out.resolve()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    scores = rng.random((40, 6))
    scores[:, 1] = np.round(scores[:, 1], 1)  # many ties
    scores[:, 2] = 0.5  # one tie group
    targets = (rng.random((40, 6)) < 0.3).astype(np.uint8)
    targets[0, :] = 1
    targets[:, 5] = 0  # a class without positives: left out of the macro mean
    ap = M.average_precision_per_class(scores, targets)
    assert np.isnan(ap[5])
    for k in range(5):
        assert abs(ap[k] - sk.average_precision_score(targets[:, k], scores[:, k])) < 1e-9
    ref_macro = np.mean([sk.average_precision_score(targets[:, k], scores[:, k])
                         for k in range(5)])
    assert abs(M.map_macro(scores, targets) - ref_macro) < 1e-9
    ref_micro = sk.average_precision_score(targets.ravel(), scores.ravel())
    assert abs(M.map_micro(scores, targets) - ref_micro) < 1e-9


def test_topk_and_substitutes():
    scores = np.array([[0.9, 0.8, 0.1], [0.2, 0.9, 0.3], [0.1, 0.2, 0.7]])
    targets = np.array([[0, 1, 1], [0, 1, 0], [1, 0, 0]])
    assert M.multilabel_topk_correct(scores, targets, 1).tolist() == [False, True, False]
    assert M.multilabel_topk_correct(scores, targets, 2).tolist() == [True, True, False]
    rows = ML.substitutes(scores, targets, ["a", "b", "c"])
    # video 0 (labels b, c) predicted a; video 2 (label a) predicted c
    assert {(r["actual"], r["predicted"], r["count"]) for r in rows} == {
        ("b", "a", 1), ("c", "a", 1), ("a", "c", 1)}


def test_loss_auto_is_bce_for_multi_hot_targets():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    hot = torch.tensor([[1.0, 0.0, 1.0]])
    cfg = TrainConfig()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, hot)
    assert torch.allclose(loss_fn(logits, hot, cfg), bce)
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor([0]))
    assert torch.allclose(loss_fn(logits, torch.tensor([0]), cfg), ce)  # single-label: CE
    cfg.loss = "bce"  # single-label targets become one-hot
    one = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([[1., 0, 0]]))
    assert torch.allclose(loss_fn(logits, torch.tensor([0]), cfg), one)


def test_multi_hot_targets_through_two_workers(mmit):
    split = load_split(mmit, "training")
    ds = VideoDataset(split.records, num_classes=len(split.classes), frames=4, size=32,
                      multi_label=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    got = {}
    for _clips, targets, idx in loader:
        assert targets.dtype == torch.float32 and targets.shape[1] == len(split.classes)
        got.update({int(i): t for i, t in zip(idx, targets)})
    assert len(got) == len(split.records)
    for i, rec in enumerate(split.records):
        assert sorted(np.flatnonzero(got[i].numpy()).tolist()) == sorted(rec.labels)


def test_mmit_check_train_evaluate_predict_compare(mmit, tmp_path, capsys):
    assert main(["check", str(mmit), "--workers", "1", "--min-size", "16",
                 "--min-frames", "4"]) == 0
    run = tmp_path / "run"
    assert main(["train", "--data", str(mmit), "--out", str(run), *TINY]) == 0
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert "val_map_macro" in row
    ev = tmp_path / "eval"
    assert main(["evaluate", str(run), "--data", str(mmit), "--out", str(ev),
                 "--workers", "0", "--device", "cpu", "--no-plots"]) == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    z = np.load(ev / "scores.npz")
    split = load_split(mmit, "validation")
    truth = {r.path.relative_to(mmit / "validation").as_posix(): set(r.labels)
             for r in split.records}
    names = [str(n) for n in z["class_names"]]
    assert names == split.classes
    got = {p.split("/", 1)[1]: set(np.flatnonzero(t).tolist())
           for p, t in zip(z["paths"], z["targets"])}
    assert got == truth and any(len(v) == 2 for v in got.values())
    probs, targets = z["video_probs"], z["targets"]
    assert not np.allclose(probs.sum(1), 1)  # sigmoid scores
    ks = [k for k in range(len(names)) if targets[:, k].any()]
    ref = np.mean([sk.average_precision_score(targets[:, k], probs[:, k]) for k in ks])
    assert metrics["multi_label"] and abs(metrics["map_macro"] - ref) < 1e-9
    ref_micro = sk.average_precision_score(targets.ravel(), probs.ravel())
    assert abs(metrics["map_micro"] - ref_micro) < 1e-9
    with open(ev / "predictions.csv", newline="") as fh:
        labels = {row["path"]: row["label"] for row in csv.DictReader(fh)}
    assert {p.split("/", 1)[1]: set(v.split("|")) for p, v in labels.items()} == {
        p: {names[c] for c in s} for p, s in truth.items()}
    capsys.readouterr()
    video = str(split.records[0].path)
    assert main(["predict", str(run), video, "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["multi_label"] is True
    assert main(["predict", str(run), video, "--device", "cpu"]) == 0
    assert "do not sum to one" in capsys.readouterr().out
    assert main(["compare", str(ev), str(ev), "--out", str(tmp_path / "cmp")]) == 0
    comp = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert comp["multi_label"] and comp["bootstrap_map"]["p"] == 1.0
    assert main(["report", str(ev), "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "AP (%)" in page and "in place of a missing label" in page
