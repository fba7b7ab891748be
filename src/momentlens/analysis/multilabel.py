"""Multi-label (M-MiT) metrics: what ``metrics.json`` holds for a multi-label evaluation,
which classes are predicted in place of a missing label, and the paired bootstrap of
mAP that ``compare`` uses instead of McNemar.

Scores are per-class sigmoid probabilities ``(N, K)``; ``targets`` are 0/1 ``(N, K)``
(1 at each of a video's labels). Average precision is
:func:`momentlens.analysis.metrics.average_precision_per_class` (ties documented there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from momentlens.analysis import metrics as M

#: Resamples and seed of :func:`bootstrap_map` (fixed: the same folders give the same p).
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def _none(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def check_targets(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(scores float64 (N, K), targets bool (N, K))``, or ``ValueError``."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets)
    if s.ndim != 2 or t.shape != s.shape:
        raise ValueError(f"scores and targets must both be (N, K), got {s.shape}, {t.shape}")
    if t.size and not np.isin(t, (0, 1)).all():
        raise ValueError("targets must be 0/1")
    return s, t > 0


def class_recall(scores: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """Per class ``(K,)``: the share of its videos that have it among their ``k`` best
    classes (for single-label data, the class's top-k accuracy); NaN without videos."""
    s, t = check_targets(scores, targets)
    best = M.topk_indices(s, k) if len(s) else np.zeros((0, k), np.int64)
    hit = np.zeros(t.shape, dtype=bool)
    np.put_along_axis(hit, best, True, axis=1)
    n = t.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (hit & t).sum(axis=0) / n
    out[n == 0] = np.nan
    return out


def label_confusion(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(K, K)`` counts: ``cm[a, p]`` = videos labelled ``a`` whose top-1 class is ``p``
    (a video with two labels counts once in each of its rows)."""
    s, t = check_targets(scores, targets)
    k = s.shape[1]
    pred = M.predict(s) if len(s) else np.zeros(0, np.int64)
    cm = np.zeros((k, k), dtype=np.int64)
    videos, actual = np.nonzero(t)
    np.add.at(cm, (actual, pred[videos]), 1)
    return cm


def substitutes(scores: np.ndarray, targets: np.ndarray, class_names: Sequence[str],
                top: int | None = 20) -> list[dict[str, Any]]:
    """The classes most often predicted in place of a missing label: for each video
    whose top-1 class ``p`` is none of its labels, every label ``a`` counts ``(a, p)``.
    ``freq`` = count / videos labelled ``a``. Rows as
    :func:`~momentlens.analysis.metrics.most_confused` (same keys and order)."""
    s, t = check_targets(scores, targets)
    k = s.shape[1]
    pred = M.predict(s) if len(s) else np.zeros(0, np.int64)
    predicted_right = np.zeros_like(t)
    predicted_right[np.arange(len(pred)), pred] = True
    right = predicted_right & t  # the top-1 is a label: no label of the video is "missing"
    # Videos whose top-1 is one of their labels add nothing off the diagonal.
    ok = right.any(axis=1)
    miss = np.zeros((k, k), dtype=np.int64)
    videos, actual = np.nonzero(t & ~ok[:, None])
    np.add.at(miss, (actual, pred[videos]), 1)
    totals = t.sum(axis=0)
    rows = [{"actual": str(class_names[a]), "predicted": str(class_names[p]),
             "freq": int(miss[a, p]) / int(totals[a]), "count": int(miss[a, p])}
            for a, p in zip(*np.nonzero(miss))]
    rows.sort(key=lambda r: (-r["freq"], -r["count"], r["actual"], r["predicted"]))
    return rows if top is None else rows[:top]


def summarize_multilabel(video_probs: np.ndarray, targets: np.ndarray,
                         class_names: Sequence[str], clip_probs: np.ndarray | None = None,
                         top_confused: int = 20) -> dict[str, Any]:
    """Everything a multi-label ``metrics.json`` holds that is computed from scores.

    ``map_macro`` (mean per-class AP over classes with positives), ``map_micro`` (every
    (video, class) pair pooled), ``top1`` (the best class is one of the video's labels),
    ``top5`` (any label among the 5 best), ``mean_class_top1`` (mean of per-class
    top-1 recall); per class ``ap``, ``n`` (videos with the label), ``top1``/``top5``
    (:func:`class_recall`). ``clip_probs`` ``(N * views, K)``, video by video, give
    ``clip_top1``/``clip_top5``. ``most_confused``: :func:`substitutes`.
    """
    s, t = check_targets(video_probs, targets)
    k = len(class_names)
    if s.shape[1] != k:
        raise ValueError(f"scores have {s.shape[1]} classes but class_names has {k}")
    top5 = min(M.TOPK, k)
    ap = M.average_precision_per_class(s, t)
    r1, r5 = class_recall(s, t, 1), class_recall(s, t, top5)
    clip1 = clip5 = None
    if clip_probs is not None and len(s):
        clip_t = np.repeat(t, len(clip_probs) // len(s), axis=0)
        clip1 = _none(_mean(M.multilabel_topk_correct(clip_probs, clip_t, 1)))
        clip5 = _none(_mean(M.multilabel_topk_correct(clip_probs, clip_t, top5)))
    n = t.sum(axis=0)
    return {
        "multi_label": True,
        "top1": _none(_mean(M.multilabel_topk_correct(s, t, 1))),
        "top5": _none(_mean(M.multilabel_topk_correct(s, t, top5))),
        "map_macro": _none(M.map_macro(s, t)),
        "map_micro": _none(M.map_micro(s, t)) if t.any() else None,
        "mean_class_top1": _none(float(np.nanmean(r1)) if (n > 0).any() else math.nan),
        "num_videos": int(len(s)), "num_classes": int(k),
        "clip_top1": clip1, "clip_top5": clip5,
        "per_class": {str(name): {"ap": _none(ap[i]), "top1": _none(r1[i]),
                                  "top5": _none(r5[i]), "n": int(n[i])}
                      for i, name in enumerate(class_names)},
        "most_confused": substitutes(s, t, class_names, top=top_confused),
    }


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else math.nan


def bootstrap_map(scores_a: np.ndarray, scores_b: np.ndarray, targets: np.ndarray,
                  resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
                  ) -> dict[str, Any]:
    """Paired bootstrap of macro mAP, B - A, on the same videos (rows matched).

    Each resample draws N videos with replacement (``np.random.default_rng(seed)``) and
    scores both models on it. ``ci95``: the 2.5 and 97.5 percentiles of the resampled
    differences; ``p``: two-sided, ``min(1, 2 (1 + #{d <= 0}) / (R + 1))`` with the
    smaller tail (so never 0).
    """
    a, t = check_targets(scores_a, targets)
    b, _ = check_targets(scores_b, targets)
    n = len(t)
    out: dict[str, Any] = {"n": int(n), "resamples": int(resamples), "seed": int(seed),
                           "map_a": _none(M.map_macro(a, t)), "map_b": _none(M.map_macro(b, t))}
    out["diff"] = (None if out["map_a"] is None or out["map_b"] is None
                   else out["map_b"] - out["map_a"])
    if n == 0 or out["diff"] is None:
        return {**out, "ci95": None, "p": None}
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for r in range(resamples):
        idx = rng.integers(0, n, n)
        diffs[r] = M.map_macro(b[idx], t[idx]) - M.map_macro(a[idx], t[idx])
    diffs = diffs[~np.isnan(diffs)]
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    tail = min(int((diffs <= 0).sum()), int((diffs >= 0).sum()))
    p = min(1.0, 2 * (1 + tail) / (len(diffs) + 1))
    return {**out, "ci95": [float(lo), float(hi)], "p": float(p)}


def describe_bootstrap(t: dict[str, Any], na: str, nb: str) -> str:
    """One sentence on :func:`bootstrap_map`'s result."""
    if t.get("p") is None:
        return f"Paired bootstrap of mAP: not computed ({t['n']} paired videos)."
    lo, hi = t["ci95"]
    verdict = "significant" if t["p"] < 0.05 else "not significant"
    return (f"Paired bootstrap of macro mAP over {t['n']} videos ({t['resamples']} resamples, "
            f"seed {t['seed']}): {nb} - {na} = {100 * t['diff']:+.2f} points, 95% interval "
            f"[{100 * lo:+.2f}, {100 * hi:+.2f}], two-sided p = {t['p']:.3g} ({verdict} at "
            f"the 5% level).")
