"""Classification metrics, implemented once for training-time validation, ``evaluate``,
``compare`` and the tests.

Inputs are numpy arrays, outputs are Python floats (or numpy arrays for per-class
values). Accuracies are fractions in ``[0, 1]``.

Ranking rule (used by every top-k function here): classes are ordered by descending
score, and classes with *equal* scores are ordered by ascending class index. This is
what ``np.argsort(-scores, kind="stable")`` gives and what ``np.argmax`` gives for
top-1, so a tie never depends on the sort algorithm or the platform. With scores
``[0.4, 0.4, 0.2]`` the top-1 prediction is class 0, and a video of class 1 is a
top-1 miss but a top-2 hit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

TOPK = 5  # the paper reports top-1 and top-5


def _check_scores_labels(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape (N, K), got {scores.shape}")
    if labels.shape != (scores.shape[0],):
        raise ValueError(f"labels must have shape ({scores.shape[0]},), got {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    k = scores.shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must lie in [0, {k}), got range [{labels.min()}, {labels.max()}]")
    return scores, labels.astype(np.int64)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64 along ``axis``."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(x)
    return e / np.sum(e, axis=axis, keepdims=True)


def average_clip_scores(
    clip_probs: np.ndarray, video_ids: Sequence[Any] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Video-level scores: the mean of the probabilities of each video's clips x crops.

    ``clip_probs`` is ``(M, K)`` softmax probabilities, one row per clip (or crop) and
    ``video_ids`` is ``(M,)`` (ints or strings) naming the video of each row. Returns
    ``(ids, probs)`` with ``ids`` the sorted unique video ids ``(V,)`` and ``probs`` the
    ``(V, K)`` float64 means. Averaging probabilities (not logits) is the convention of
    the evaluation protocol; pass ``softmax(logits)`` if you hold logits.
    """
    probs = np.asarray(clip_probs, dtype=np.float64)
    ids = np.asarray(video_ids)
    if probs.ndim != 2:
        raise ValueError(f"clip_probs must have shape (M, K), got {probs.shape}")
    if ids.shape != (probs.shape[0],):
        raise ValueError(f"video_ids must have shape ({probs.shape[0]},), got {ids.shape}")
    uniq, inverse = np.unique(ids, return_inverse=True)
    sums = np.zeros((len(uniq), probs.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse.reshape(-1), probs)
    counts = np.bincount(inverse.reshape(-1), minlength=len(uniq)).astype(np.float64)
    return uniq, sums / counts[:, None]


def rank_of_label(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """0-based rank of the true class in each row under the module's ranking rule, ``(N,)``."""
    scores, labels = _check_scores_labels(scores, labels)
    rows = np.arange(len(labels))
    true = scores[rows, labels][:, None]
    idx = np.arange(scores.shape[1])[None, :]
    ahead = (scores > true) | ((scores == true) & (idx < labels[:, None]))
    return ahead.sum(axis=1)


def topk_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` best classes of each row, best first, ``(N, min(k, K))`` int64."""
    scores = np.asarray(scores)
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, : min(k, scores.shape[1])].astype(np.int64)


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean ``(N,)``: is the true class among the ``k`` best? (``k >= K`` is always True.)"""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return rank_of_label(scores, labels) < k


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of rows whose true class is among the ``k`` best; NaN when there are no rows."""
    correct = topk_correct(scores, labels, k)
    return float(correct.mean()) if correct.size else math.nan


def predict(scores: np.ndarray) -> np.ndarray:
    """Top-1 class of each row ``(N,)`` (ties go to the lowest class index)."""
    return np.argmax(np.asarray(scores), axis=1).astype(np.int64)


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``(K, K)`` int64: ``cm[a, p]`` = videos of actual class ``a`` predicted as ``p``."""
    pred = np.asarray(pred, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if pred.shape != labels.shape or pred.ndim != 1:
        raise ValueError(f"pred and labels must be equal-length 1-D arrays, got {pred.shape} "
                         f"and {labels.shape}")
    for name, arr in (("pred", pred), ("labels", labels)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes})")
    flat = np.bincount(labels * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Videos per class ``(K,)`` int64."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.int64)


def per_class_accuracy(
    scores: np.ndarray, labels: np.ndarray, num_classes: int, k: int = 1
) -> np.ndarray:
    """Top-k accuracy of each class ``(K,)`` float64; NaN for classes with no videos."""
    correct = topk_correct(scores, labels, k)
    labels = np.asarray(labels, dtype=np.int64)
    n = class_counts(labels, num_classes)
    hits = np.bincount(labels, weights=correct.astype(np.float64), minlength=num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = hits / n
    acc[n == 0] = np.nan
    return acc


def mean_class_accuracy(
    scores: np.ndarray, labels: np.ndarray, num_classes: int, k: int = 1
) -> float:
    """Mean of the per-class top-k accuracies over classes that have at least one video."""
    acc = per_class_accuracy(scores, labels, num_classes, k)
    present = acc[~np.isnan(acc)]
    return float(present.mean()) if present.size else math.nan


def most_confused(
    cm: np.ndarray, class_names: Sequence[str], top: int | None = 20, min_count: int = 1
) -> list[dict[str, Any]]:
    """The most confused (actual, predicted) pairs, as in the paper's Tables 2 and 3.

    ``freq`` = ``cm[a, p] / cm[a].sum()``: the share of class ``a``'s videos predicted
    (top-1) as ``p``. Only off-diagonal cells with ``count >= min_count`` are listed.
    Order: ``freq`` descending, then ``count`` descending (more evidence first), then
    the actual class name, then the predicted class name (both ascending). ``top=None``
    lists every pair.
    """
    cm = np.asarray(cm)
    k = len(class_names)
    if cm.shape != (k, k):
        raise ValueError(f"cm must have shape ({k}, {k}) to match class_names, got {cm.shape}")
    totals = cm.sum(axis=1)
    rows: list[dict[str, Any]] = []
    for a, p in zip(*np.nonzero(cm)):
        count = int(cm[a, p])
        if a == p or count < max(min_count, 1):
            continue
        rows.append({"actual": str(class_names[a]), "predicted": str(class_names[p]),
                     "freq": count / int(totals[a]), "count": count})
    rows.sort(key=lambda r: (-r["freq"], -r["count"], r["actual"], r["predicted"]))
    return rows if top is None else rows[:top]


def _nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def summarize(
    video_probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    clip_probs: np.ndarray | None = None,
    clip_labels: np.ndarray | None = None,
    top_confused: int = 20,
) -> dict[str, Any]:
    """Everything ``metrics.json`` holds that is computed from scores.

    ``video_probs`` ``(N, K)``, ``labels`` ``(N,)``. ``clip_probs`` ``(M, K)`` with
    ``clip_labels`` ``(M,)`` give the clip-level accuracies; without them those keys are
    ``None``. Top-5 uses ``min(5, K)``. Per-class accuracies of classes with no videos
    are ``None`` (JSON null), and ``mean_class_top1`` ignores those classes.
    """
    video_probs, labels = _check_scores_labels(video_probs, labels)
    k = len(class_names)
    if video_probs.shape[1] != k:
        raise ValueError(f"scores have {video_probs.shape[1]} classes but class_names has {k}")
    top5 = min(TOPK, k)
    acc1 = per_class_accuracy(video_probs, labels, k, 1)
    acc5 = per_class_accuracy(video_probs, labels, k, top5)
    n = class_counts(labels, k)
    clip1 = clip5 = None
    if clip_probs is not None:
        if clip_labels is None:
            raise ValueError("clip_probs given without clip_labels")
        clip1 = _nan_to_none(topk_accuracy(clip_probs, clip_labels, 1))
        clip5 = _nan_to_none(topk_accuracy(clip_probs, clip_labels, top5))
    cm = confusion_matrix(predict(video_probs), labels, k)
    return {
        "top1": _nan_to_none(topk_accuracy(video_probs, labels, 1)),
        "top5": _nan_to_none(topk_accuracy(video_probs, labels, top5)),
        "mean_class_top1": _nan_to_none(mean_class_accuracy(video_probs, labels, k, 1)),
        "num_videos": int(len(labels)),
        "num_classes": int(k),
        "clip_top1": clip1,
        "clip_top5": clip5,
        "per_class": {
            str(name): {"top1": _nan_to_none(acc1[i]), "top5": _nan_to_none(acc5[i]),
                        "n": int(n[i])}
            for i, name in enumerate(class_names)
        },
        "most_confused": most_confused(cm, class_names, top=top_confused),
    }


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, Any]:
    """Paired McNemar test of two classifiers' correctness on the same items.

    ``b`` = items A gets right and B gets wrong, ``c`` = A wrong and B right. The exact
    test is two-sided: ``p = min(1, 2 * P[X <= min(b, c)])`` with ``X ~ Binomial(b + c,
    1/2)``. The chi-square version uses the continuity correction
    ``chi2 = max(0, |b - c| - 1)**2 / (b + c)`` with one degree of freedom, so
    ``p = erfc(sqrt(chi2 / 2))``. With ``b + c == 0`` both p-values are 1.
    """
    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape or a.ndim != 1:
        raise ValueError(f"correctness arrays must be equal-length 1-D, got {a.shape}, {b_.shape}")
    b = int(np.sum(a & ~b_))
    c = int(np.sum(~a & b_))
    n = b + c
    if n == 0:
        p_exact, chi2, p_chi2 = 1.0, 0.0, 1.0
    else:
        tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
        # Exact integer arithmetic; int / int is correctly rounded even for huge n.
        p_exact = min(1.0, (2 * tail) / (2**n))
        chi2 = max(0, abs(b - c) - 1) ** 2 / n
        p_chi2 = math.erfc(math.sqrt(chi2 / 2.0))
    return {"n": int(a.size), "both_correct": int(np.sum(a & b_)), "both_wrong": int(np.sum(~a & ~b_)),
            "b": b, "c": c, "p_exact": p_exact, "chi2": chi2, "p_chi2": p_chi2}


# ----------------------------------------------------------------------------- multi-label


def average_precision_per_class(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Average precision of each column (class) over the rows (videos), ``(K,)`` float64;
    NaN for a class with no positive row.

    Rows are sorted by descending score; AP is the mean, over the positives, of the
    precision at each positive. **Ties**: rows with equal scores form one group that is
    taken as a whole, so every positive of the group gets the precision at the group's
    end (the positives and rows of every group above it and of the group itself). This
    is the step-wise ``sum_n (R_n - R_{n-1}) P_n`` over distinct thresholds of
    scikit-learn's ``average_precision_score``, and does not depend on row order.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(targets) > 0
    if s.ndim != 2 or y.shape != s.shape:
        raise ValueError(f"scores and targets must both be (N, K), got {s.shape}, {y.shape}")
    n = s.shape[0]
    n_pos = y.sum(axis=0)
    if n == 0:
        return np.full(s.shape[1], np.nan)
    order = np.argsort(-s, axis=0, kind="stable")
    s = np.take_along_axis(s, order, 0)
    y = np.take_along_axis(y, order, 0)
    precision = np.cumsum(y, axis=0) / np.arange(1, n + 1, dtype=np.float64)[:, None]
    group_end = np.ones(s.shape, dtype=bool)
    group_end[:-1] = s[1:] != s[:-1]
    # For each row, the index of the last row of its tie group.
    end = np.where(group_end, np.arange(n)[:, None], n)
    end = np.minimum.accumulate(end[::-1], axis=0)[::-1]
    at_end = np.take_along_axis(precision, end, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(y, at_end, 0.0).sum(axis=0) / n_pos
    ap[n_pos == 0] = np.nan
    return ap


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Average precision of one ranking (see :func:`average_precision_per_class`); NaN
    without positives."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
    return float(average_precision_per_class(s, np.asarray(positives).reshape(-1, 1))[0])


def map_macro(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean of the per-class APs over the classes that have positives (NaN if none)."""
    ap = average_precision_per_class(scores, targets)
    present = ap[~np.isnan(ap)]
    return float(present.mean()) if present.size else math.nan


def map_micro(scores: np.ndarray, targets: np.ndarray) -> float:
    """AP of every (video, class) pair pooled into one ranking."""
    return average_precision(np.asarray(scores).ravel(), np.asarray(targets).ravel())


def multilabel_topk_correct(scores: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """Boolean ``(N,)``: is any of the video's labels (``targets`` 0/1 ``(N, K)``) among
    its ``k`` best classes (the ranking rule above)?"""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    y = np.asarray(targets) > 0
    if not len(y):
        return np.zeros(0, dtype=bool)
    best = topk_indices(scores, k)
    return np.take_along_axis(y, best, 1).any(axis=1)
