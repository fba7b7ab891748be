"""Writing and reading evaluation folders."""

import csv
import json

import numpy as np
import pytest

from momentlens.analysis import metrics as M
from momentlens.analysis.evalio import read_evaluation, write_evaluation
from momentlens.utils import MomentlensError

FILES = ["metrics.json", "per_class.csv", "confusions.csv", "predictions.csv", "scores.npz",
         "per_class.png", "top5_hist.png", "confusion.png"]


def test_writes_every_file_and_reads_back(tmp_path, eval_factory, scores_factory, class_names):
    d = eval_factory(tmp_path, "m", seed=3)
    assert sorted(p.name for p in d.iterdir()) == sorted(FILES)  # no temporary files left
    for name in FILES:
        assert (d / name).stat().st_size > 0, name
    for name in ("per_class.png", "top5_hist.png", "confusion.png"):
        assert (d / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ev = read_evaluation(d)
    probs, labels = scores_factory(3)
    np.testing.assert_array_equal(ev.probs, probs)
    assert ev.labels.tolist() == labels.tolist() and ev.class_names == class_names
    m = ev.metrics
    assert (m["model"], m["data"], m["split"]) == ("m", "synthetic", "validation")
    assert (m["num_scored"], m["num_listed"], m["num_unreadable"]) == (48, 49, 1)
    assert m["unreadable"] == ["validation/frying/broken.mp4"]
    assert m["top1"] == pytest.approx(M.topk_accuracy(probs, labels, 1))
    assert m["per_class"]["empty"] == {"top1": None, "top5": None, "n": 0}
    assert ev.top1_correct.tolist() == M.topk_correct(probs, labels, 1).tolist()


def test_csv_contents(tmp_path):
    probs = np.array([[0.620, 0.320, 0.028, 0.018, 0.010, 0.004],
                      [0.1, 0.5, 0.1, 0.1, 0.1, 0.1]])
    names = ["grilling", "barbecuing", "baking", "frying", "cooking", "combusting"]
    write_evaluation(tmp_path, video_probs=probs, labels=np.array([4, 1]),
                     paths=["a.mp4", "b.mp4"], class_names=names, plots=False,
                     meta={"model": "x", "data": "d", "split": "validation"})
    rows = list(csv.reader((tmp_path / "predictions.csv").open()))
    assert rows[0] == ["path", "label", "pred1", "prob1", "pred2", "prob2", "pred3", "prob3",
                       "pred4", "prob4", "pred5", "prob5"]
    assert rows[1] == ["a.mp4", "cooking", "grilling", "0.620000", "barbecuing", "0.320000",
                       "baking", "0.028000", "frying", "0.018000", "cooking", "0.010000"]
    # Row 2 ties at 0.1: lower class index first.
    assert rows[2][2:12:2] == ["barbecuing", "grilling", "baking", "frying", "cooking"]
    cm = list(csv.reader((tmp_path / "confusions.csv").open()))
    assert cm[0][1:] == names and [r[0] for r in cm[1:]] == names
    assert cm[5][1:] == ["1", "0", "0", "0", "0", "0"]  # cooking -> grilling
    assert cm[2][1:] == ["0", "1", "0", "0", "0", "0"]  # barbecuing correct
    pc = list(csv.reader((tmp_path / "per_class.csv").open()))
    assert pc[0] == ["class", "index", "n", "top1", "top5"]
    assert pc[1] == ["grilling", "0", "0", "", ""]
    assert pc[5] == ["cooking", "4", "1", "0.000000", "1.000000"]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["most_confused"] == [{"actual": "cooking", "predicted": "grilling", "freq": 1.0,
                                   "count": 1}]


def test_deterministic_bytes(tmp_path, eval_factory):
    a, b = eval_factory(tmp_path, "run1", seed=5), eval_factory(tmp_path, "run2", seed=5)
    ma = (a / "metrics.json").read_bytes().replace(b'"run1"', b'"X"')
    mb = (b / "metrics.json").read_bytes().replace(b'"run2"', b'"X"')
    assert ma == mb
    for name in ("per_class.csv", "confusions.csv", "predictions.csv", "scores.npz"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # Same folder written twice: identical metrics.json.
    before = (a / "metrics.json").read_bytes()
    eval_factory(tmp_path, "run1", seed=5)
    assert (a / "metrics.json").read_bytes() == before


def test_meta_extra_keys_and_bad_meta(tmp_path, scores_factory, class_names):
    probs, labels = scores_factory(0)
    paths = [f"v{i}.mp4" for i in range(len(labels))]
    cam = {"pointing": 0.8, "iou": 0.4, "per_class": {"frying": {"pointing": 0.5}}}
    m = write_evaluation(tmp_path / "e", video_probs=probs, labels=labels, paths=paths,
                         class_names=class_names, plots=False, listed=60,
                         meta={"model": "m", "data": "d", "split": "s", "cam": cam, "clips": 2})
    assert m["cam"] == cam and m["clips"] == 2 and m["num_listed"] == 60
    with pytest.raises(ValueError, match="overwrite"):
        write_evaluation(tmp_path / "f", video_probs=probs, labels=labels, paths=paths,
                         class_names=class_names, plots=False, meta={"top1": 1.0})
    with pytest.raises(ValueError, match="paths must be unique"):
        write_evaluation(tmp_path / "g", video_probs=probs, labels=labels,
                         paths=["same.mp4"] * len(labels), class_names=class_names, meta={})


def test_read_errors_name_the_file(tmp_path, eval_factory):
    with pytest.raises(MomentlensError, match="not an evaluation folder"):
        read_evaluation(tmp_path / "nope")
    d = eval_factory(tmp_path, "m", seed=1)
    (d / "metrics.json").write_text("{not json")
    with pytest.raises(MomentlensError, match="metrics.json: cannot read JSON"):
        read_evaluation(d)
    (d / "metrics.json").write_text('{"top1": 0.5}')
    with pytest.raises(MomentlensError, match="metrics.json: missing key 'top5'"):
        read_evaluation(d)
    (d / "scores.npz").unlink()
    with pytest.raises(MomentlensError, match="scores.npz: missing"):
        read_evaluation(d)


def test_rewriting_a_folder_marks_it_incomplete_until_the_new_metrics(
        tmp_path, eval_factory, scores_factory, monkeypatch):
    # A second evaluation into the same folder, stopped half-way (here: the plots fail):
    # the old metrics.json must be gone, so the new tables are never read with it.
    import momentlens.analysis.evalio as E

    d = eval_factory(tmp_path, "m", seed=1)
    old_top1 = read_evaluation(d).metrics["top1"]

    def stop(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(E, "write_plots", stop)
    with pytest.raises(KeyboardInterrupt):
        eval_factory(tmp_path, "m", seed=5)
    assert not (d / "metrics.json").exists()
    with pytest.raises(MomentlensError, match="metrics.json: missing.*stopped part-way"):
        read_evaluation(d)
    monkeypatch.undo()
    eval_factory(tmp_path, "m", seed=5)  # run again: complete, the new result
    new = read_evaluation(d)
    assert new.metrics["top1"] != old_top1
    np.testing.assert_array_equal(new.probs, scores_factory(5)[0])


def test_no_plots_into_a_folder_with_plots_removes_them(tmp_path, eval_factory,
                                                         scores_factory, class_names):
    d = eval_factory(tmp_path, "m", seed=1)
    probs, labels = scores_factory(2)
    write_evaluation(d, video_probs=probs, labels=labels,
                     paths=[f"v{i}.mp4" for i in range(len(labels))], class_names=class_names,
                     meta={"model": "m2", "data": "synthetic", "split": "validation"},
                     plots=False)
    assert not list(d.glob("*.png"))  # none left over from the first evaluation
    assert read_evaluation(d).metrics["model"] == "m2"
