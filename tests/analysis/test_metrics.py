"""Metrics against values computed by hand on small fixed score matrices."""

import math

import numpy as np
import pytest

from momentlens.analysis import metrics as M

# Six videos, four classes; class 3 ("eating") has no videos. Rows 1, 3 and 5 hold ties,
# which the ranking rule breaks by ascending class index.
S = np.array([
    [0.50, 0.20, 0.20, 0.10],  # label 0: rank 0
    [0.40, 0.40, 0.10, 0.10],  # label 1: tied with class 0, which wins -> rank 1, pred 0
    [0.10, 0.60, 0.20, 0.10],  # label 2: rank 1, pred 1
    [0.30, 0.30, 0.30, 0.10],  # label 2: classes 0 and 1 win the tie -> rank 2, pred 0
    [0.10, 0.20, 0.30, 0.40],  # label 1: rank 2, pred 3
    [0.25, 0.25, 0.25, 0.25],  # label 0: all tied, class 0 wins -> rank 0, pred 0
])
Y = np.array([0, 1, 2, 2, 1, 0])
NAMES = ["walking", "running", "jumping", "eating"]


def test_ranks_and_topk_with_ties():
    assert M.rank_of_label(S, Y).tolist() == [0, 1, 1, 2, 2, 0]
    assert M.topk_correct(S, Y, 1).tolist() == [True, False, False, False, False, True]
    assert M.topk_correct(S, Y, 2).tolist() == [True, True, True, False, False, True]
    assert M.topk_accuracy(S, Y, 1) == pytest.approx(2 / 6)
    assert M.topk_accuracy(S, Y, 2) == pytest.approx(4 / 6)
    assert M.topk_accuracy(S, Y, 3) == 1.0
    assert M.topk_accuracy(S, Y, 10) == 1.0
    assert M.predict(S).tolist() == [0, 0, 1, 0, 3, 0]
    assert M.topk_indices(S, 3).tolist()[3] == [0, 1, 2]
    assert isinstance(M.topk_accuracy(S, Y, 1), float)


def test_topk_matches_stable_argsort_on_random_ties():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 4, size=(200, 7)).astype(float)  # many ties
    y = rng.integers(0, 7, size=200)
    order = np.argsort(-s, axis=1, kind="stable")
    for k in (1, 3, 5):
        expected = (order[:, :k] == y[:, None]).any(axis=1)
        assert (M.topk_correct(s, y, k) == expected).all()


def test_confusion_matrix_counts():
    cm = M.confusion_matrix(M.predict(S), Y, 4)
    assert cm.tolist() == [[2, 0, 0, 0], [1, 0, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0]]
    assert cm.dtype == np.int64


def test_per_class_and_mean_class_accuracy_ignore_empty_class():
    acc1 = M.per_class_accuracy(S, Y, 4, 1)
    assert acc1[:3].tolist() == [1.0, 0.0, 0.0] and math.isnan(acc1[3])
    acc2 = M.per_class_accuracy(S, Y, 4, 2)
    assert acc2[:3].tolist() == [1.0, 0.5, 0.5] and math.isnan(acc2[3])
    assert M.mean_class_accuracy(S, Y, 4, 1) == pytest.approx(1 / 3)
    assert M.mean_class_accuracy(S, Y, 4, 2) == pytest.approx(2 / 3)


def test_most_confused_name_tiebreak():
    cm = M.confusion_matrix(M.predict(S), Y, 4)
    pairs = M.most_confused(cm, NAMES)
    # Every off-diagonal cell is 1 of 2 videos: freq and count tie, names decide.
    assert [(p["actual"], p["predicted"]) for p in pairs] == [
        ("jumping", "running"), ("jumping", "walking"),
        ("running", "eating"), ("running", "walking")]
    assert all(p["freq"] == 0.5 and p["count"] == 1 for p in pairs)


def test_most_confused_freq_then_count_then_names():
    cm = np.array([[6, 3, 1, 0],    # a: 10 videos
                   [1, 1, 0, 0],    # b: 2
                   [2, 2, 4, 0],    # c: 8
                   [1, 0, 0, 3]])   # d: 4
    pairs = M.most_confused(cm, ["a", "b", "c", "d"])
    got = [(p["actual"], p["predicted"], p["freq"], p["count"]) for p in pairs]
    assert got == [("b", "a", 0.5, 1), ("a", "b", 0.3, 3), ("c", "a", 0.25, 2),
                   ("c", "b", 0.25, 2), ("d", "a", 0.25, 1), ("a", "c", 0.1, 1)]
    assert [(p["actual"], p["predicted"]) for p in M.most_confused(cm, "abcd", top=2)] == [
        ("b", "a"), ("a", "b")]
    assert [(p["actual"], p["predicted"]) for p in M.most_confused(cm, "abcd", min_count=2)] == [
        ("a", "b"), ("c", "a"), ("c", "b")]


def test_softmax_and_multi_clip_averaging():
    assert M.softmax(np.array([0.0, math.log(3.0)])).tolist() == pytest.approx([0.25, 0.75])
    assert M.softmax(np.array([[1000.0, 1000.0]])).tolist() == [[0.5, 0.5]]
    clips = np.array([[0.2, 0.8], [0.6, 0.4], [0.4, 0.6], [1.0, 0.0], [0.5, 0.5]])
    ids = np.array(["v2", "v1", "v2", "v1", "v3"])
    vids, probs = M.average_clip_scores(clips, ids)
    assert vids.tolist() == ["v1", "v2", "v3"]
    # v1 = mean(0.6/0.4, 1.0/0.0); v2 = mean(0.2/0.8, 0.4/0.6); v3 single clip
    np.testing.assert_allclose(probs, [[0.8, 0.2], [0.3, 0.7], [0.5, 0.5]], rtol=1e-12)
    # Integer ids work too, and the result does not depend on the order of the rows.
    vids2, probs2 = M.average_clip_scores(clips[::-1], np.array([3, 1, 2, 1, 2]))
    assert vids2.tolist() == [1, 2, 3]
    np.testing.assert_allclose(probs2, probs, rtol=1e-12)


def test_summarize_keys_and_values():
    clip_s = np.vstack([S, S[:2]])
    clip_y = np.concatenate([Y, [1, 2]])  # the two extra clips are both top-1 misses
    out = M.summarize(S, Y, NAMES, clip_probs=clip_s, clip_labels=clip_y)
    assert list(out) == ["top1", "top5", "mean_class_top1", "num_videos", "num_classes",
                         "clip_top1", "clip_top5", "per_class", "most_confused"]
    assert out["top1"] == pytest.approx(1 / 3)
    assert out["top5"] == 1.0  # K = 4 < 5, so top-5 is top-4
    assert out["mean_class_top1"] == pytest.approx(1 / 3)
    assert (out["num_videos"], out["num_classes"]) == (6, 4)
    assert out["clip_top1"] == pytest.approx(2 / 8)
    assert out["per_class"]["eating"] == {"top1": None, "top5": None, "n": 0}
    assert out["per_class"]["running"] == {"top1": 0.0, "top5": 1.0, "n": 2}
    assert out["most_confused"][0] == {"actual": "jumping", "predicted": "running",
                                       "freq": 0.5, "count": 1}
    assert M.summarize(S, Y, NAMES)["clip_top1"] is None


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="labels must lie in"):
        M.topk_accuracy(S, np.array([0, 1, 2, 3, 4, 0]), 1)
    with pytest.raises(ValueError, match="class_names has 3"):
        M.summarize(S, Y, NAMES[:3])


@pytest.mark.parametrize("b,c,p_exact,chi2,p_chi2", [
    (5, 1, 2 * (1 + 6) / 2**6, 1.5, 0.2206713619),   # (|5-1|-1)^2/6; P(chi2_1 > 1.5)
    (10, 0, 2 / 2**10, 8.1, 0.00442653),             # (10-1)^2/10
    (3, 3, 1.0, 0.0, 1.0),                           # 2*P(X<=3) = 84/64 -> capped at 1
    (0, 0, 1.0, 0.0, 1.0),
])
def test_mcnemar_hand_computed(b, c, p_exact, chi2, p_chi2):
    a_right = np.array([True] * b + [False] * c + [True] * 4 + [False] * 2)
    b_right = np.array([False] * b + [True] * c + [True] * 4 + [False] * 2)
    t = M.mcnemar(a_right, b_right)
    assert (t["b"], t["c"], t["both_correct"], t["both_wrong"]) == (b, c, 4, 2)
    assert t["p_exact"] == pytest.approx(p_exact, rel=1e-12)
    assert t["chi2"] == pytest.approx(chi2)
    assert t["p_chi2"] == pytest.approx(p_chi2, rel=1e-5)


def test_mcnemar_large_n_is_finite():
    a = np.array([True] * 3000 + [False] * 2900)
    t = M.mcnemar(a, ~a)
    assert 0.0 <= t["p_exact"] <= 1.0 and t["b"] == 3000 and t["c"] == 2900
