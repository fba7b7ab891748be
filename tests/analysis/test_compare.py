"""compare: per-class differences, paired McNemar counts, files."""

import json

import numpy as np
import pytest

from momentlens.analysis.compare import compare_evaluations
from momentlens.analysis.evalio import write_evaluation
from momentlens.cli import main
from momentlens.utils import MomentlensError

NAMES = ["closing", "opening", "sailing"]


def _onehot(pred):
    p = np.full((len(pred), 3), 0.1)
    p[np.arange(len(pred)), pred] = 0.8
    return p


def _write(d, pred, labels, paths, names=NAMES):
    write_evaluation(d, video_probs=_onehot(np.array(pred)), labels=np.array(labels), paths=paths,
                     class_names=names, plots=False,
                     meta={"model": d.name, "data": "d", "split": "validation"})
    return d


def test_paired_counts_and_rankings(tmp_path):
    labels = [0, 0, 1, 1, 2, 2]
    paths = [f"v{i}.mp4" for i in range(6)]
    # A right on v0 v1 v2 v4; B right on v0 v2 v3 v5 (+ an extra video only B scored).
    a = _write(tmp_path / "A", [0, 0, 1, 0, 2, 0], labels, paths)
    # B lists its videos in another order (pairing is by path) and has one more.
    order = [6, 3, 0, 5, 1, 4, 2]
    b_pred, b_lab, b_paths = [0, 1, 1, 1, 0, 2, 0], labels + [0], paths + ["extra.mp4"]
    b = _write(tmp_path / "B", [b_pred[i] for i in order], [b_lab[i] for i in order],
               [b_paths[i] for i in order])
    comp = compare_evaluations(a, b, tmp_path / "cmp")
    t = comp["mcnemar_top1"]
    assert (t["paired"], t["only_a"], t["only_b"]) == (6, 0, 1)
    # b = A right, B wrong: v1, v4 ; c = A wrong, B right: v3, v5
    assert (t["b"], t["c"], t["both_correct"], t["both_wrong"]) == (2, 2, 2, 0)
    assert t["p_exact"] == 1.0
    pc = comp["per_class"]
    assert pc["closing"]["top1_a"] == 1.0 and pc["closing"]["n_b"] == 3
    assert pc["closing"]["top1_diff"] == pytest.approx(2 / 3 - 1.0)
    assert pc["opening"]["top1_diff"] == pytest.approx(0.5)
    assert [r["class"] for r in comp["b_better"]["top1"]] == ["opening"]
    assert [r["class"] for r in comp["a_better"]["top1"]] == ["closing"]
    assert comp["overall"]["top1"]["a"] == pytest.approx(4 / 6)
    assert comp["overall"]["top1"]["b"] == pytest.approx(5 / 7)
    for f in ("comparison.json", "top5_hists.png", "per_class_diff.png"):
        assert (tmp_path / "cmp" / f).stat().st_size > 0
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text())["a"]["name"] == "A"


def test_shared_confusions_and_b_better_sign(tmp_path):
    labels = [0, 0, 1, 1]
    paths = ["a", "b", "c", "d"]
    a = _write(tmp_path / "A", [1, 1, 1, 0], labels, paths)  # closing->opening 2/2, opening->closing 1/2
    b = _write(tmp_path / "B", [1, 0, 1, 1], labels, paths)  # closing->opening 1/2
    comp = compare_evaluations(a, b, tmp_path / "cmp", name_a="2D", name_b="3D")
    assert comp["shared_confusions"] == [{"actual": "closing", "predicted": "opening",
                                          "freq_a": 1.0, "freq_b": 0.5, "count_a": 2,
                                          "count_b": 1}]
    assert comp["b_better"]["top1"][0]["class"] == "closing"
    assert comp["b_better"]["top1"][0]["diff"] == 0.5
    assert (comp["a"]["name"], comp["b"]["name"]) == ("2D", "3D")


def test_different_class_lists_refused(tmp_path):
    a = _write(tmp_path / "A", [0], [0], ["x"])
    b = _write(tmp_path / "B", [0], [0], ["x"], names=["closing", "opening", "surfing"])
    with pytest.raises(MomentlensError, match="different class lists"):
        compare_evaluations(a, b, tmp_path / "cmp")


def test_cli_compare(tmp_path, two_evals, capsys):
    rc = main(["compare", str(two_evals[0]), str(two_evals[1]), "--out", str(tmp_path / "c"),
               "--names", "2D", "3D"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "McNemar" in out and "%" in out
    assert (tmp_path / "c" / "comparison.json").is_file()
    assert main(["compare", str(two_evals[0]), str(tmp_path / "missing"),
                 "--out", str(tmp_path / "d")]) == 2
