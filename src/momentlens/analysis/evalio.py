"""Writing and reading an evaluation folder.

An evaluation folder holds, for one model on one split::

    metrics.json       headline and per-class metrics (fractions in [0, 1]) + counts
    per_class.csv      class, index, n, top1, top5
    confusions.csv     the full K x K confusion matrix (rows actual, columns predicted)
    predictions.csv    one row per video: path, true label, top-5 labels and probabilities
    scores.npz         video_probs (N, K), labels (N,), paths (N,), class_names (K,),
                       top1_correct / top5_correct (N,), for paired tests in ``compare``;
                       multi-label: targets (N, K) 0/1 beside sigmoid video_probs, and
                       labels the first label of each video
    per_class.png, top5_hist.png, confusion.png

Every file is written atomically, and every file is a function of the inputs only
(no timestamps, no absolute paths), so the same inputs give byte-identical files.
``metrics.json`` is written last and marks the folder complete; writing into a folder
that holds an earlier evaluation first removes its ``metrics.json`` (and its PNGs when
no plots are asked for), so an evaluation stopped part-way never leaves new tables
beside old metrics that a reader would take for one complete result.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from momentlens.analysis import metrics as M
from momentlens.analysis import multilabel as ML
from momentlens.utils import MomentlensError, atomic_path, write_text_atomic

METRICS_FILE = "metrics.json"
SCORES_FILE = "scores.npz"
PLOTS = {"per_class": "per_class.png", "top5_hist": "top5_hist.png",
         "confusion": "confusion.png"}
_SCORE_KEYS = ("video_probs", "labels", "paths", "class_names", "top1_correct", "top5_correct")
_META_FIRST = ("model", "data", "split")


@dataclass
class EvalResult:
    """One evaluation folder, loaded. ``probs`` is ``(N, K)``, ``labels`` and ``paths`` ``(N,)``."""

    dir: Path
    metrics: dict[str, Any]
    probs: np.ndarray
    labels: np.ndarray
    paths: list[str]
    class_names: list[str]
    top1_correct: np.ndarray
    top5_correct: np.ndarray
    targets: np.ndarray | None = None  # (N, K) 0/1 of a multi-label evaluation

    @property
    def multi_label(self) -> bool:
        return self.targets is not None

    @property
    def name(self) -> str:
        """The model's name as recorded in metrics.json, else the folder name."""
        model = self.metrics.get("model")
        return str(model) if model else self.dir.name


def _fmt(x: float | None) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.6f}"


def _csv_text(rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(rows)
    return buf.getvalue()


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # np.savez stamps each member with the current time; a fixed date keeps the bytes
    # a function of the data. np.load reads this like any .npz.
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w") as fh:
                np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)


def _build_metrics(summary: dict[str, Any], meta: dict[str, Any], n_scored: int,
                   unreadable: list[str], listed: int | None) -> dict[str, Any]:
    n_listed = n_scored + len(unreadable) if listed is None else int(listed)
    if n_listed < n_scored + len(unreadable):
        raise ValueError(f"listed={n_listed} is smaller than scored ({n_scored}) + unreadable "
                         f"({len(unreadable)})")
    out = dict(summary)
    for key in _META_FIRST:
        out[key] = meta.get(key)
    out.update(num_listed=n_listed, num_scored=n_scored, num_unreadable=len(unreadable),
               unreadable=list(unreadable))
    for key, value in meta.items():  # e.g. clips, crops, recipe, "cam"
        if key not in out:
            out[key] = value
        elif key not in _META_FIRST:
            raise ValueError(f"meta key {key!r} would overwrite a computed metric")
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"meta is not JSON-serialisable: {exc}") from exc
    return out


def write_evaluation(
    out_dir: str | os.PathLike[str],
    *,
    video_probs: np.ndarray,
    labels: np.ndarray,
    paths: Sequence[str],
    class_names: Sequence[str],
    clip_probs: np.ndarray | None = None,
    clip_labels: np.ndarray | None = None,
    meta: dict[str, Any],
    unreadable: Sequence[str] = (),
    listed: int | None = None,
    plots: bool = True,
    targets: np.ndarray | None = None,
) -> dict[str, Any]:
    """Write a complete evaluation folder and return the metrics dict written to metrics.json.

    ``video_probs`` ``(N, K)`` are the video-level probabilities (already averaged over
    clips x crops), ``labels`` ``(N,)`` class indices, ``paths`` ``(N,)`` the videos as
    listed by the dataset (relative paths keep the folder relocatable). ``meta`` must
    hold ``model``, ``data`` and ``split``; any further JSON-serialisable keys (``clips``,
    ``crops``, ``cam``) are copied into metrics.json. ``unreadable`` lists the videos
    that could not be decoded; ``listed`` defaults to scored + unreadable. ``targets``
    ``(N, K)`` 0/1 makes it a multi-label evaluation (:mod:`.multilabel`: mAP, top-1 =
    the best class is one of the video's labels); ``labels`` then hold first labels.
    """
    out = Path(out_dir)
    probs = np.asarray(video_probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    paths = [str(p) for p in paths]
    names = [str(n) for n in class_names]
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths for {len(labels)} labels")
    if len(set(paths)) != len(paths):
        raise ValueError("paths must be unique (compare pairs videos by path)")
    if len(set(names)) != len(names):
        raise ValueError("class_names must be unique")
    summary, cm, arrays = _scored(probs, labels, names, clip_probs, clip_labels, targets)
    result = _build_metrics(summary, dict(meta), len(labels), [str(u) for u in unreadable],
                            listed)
    out.mkdir(parents=True, exist_ok=True)
    # An earlier evaluation here is incomplete from now until the new metrics.json.
    stale = [METRICS_FILE] + ([] if plots else list(PLOTS.values()))
    for name in stale:
        (out / name).unlink(missing_ok=True)
    _write_tables(out, summary, cm, probs, _label_text(labels, targets, names), paths, names)
    _write_npz(out / SCORES_FILE, {
        "video_probs": probs, "labels": labels, "paths": np.array(paths, dtype=np.str_),
        "class_names": np.array(names, dtype=np.str_), **arrays})
    if plots:
        write_plots(out, names, summary, cm, title=str(meta.get("model") or out.name))
    write_text_atomic(out / METRICS_FILE, json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result


def _scored(probs: np.ndarray, labels: np.ndarray, names: list[str],
            clip_probs: np.ndarray | None, clip_labels: np.ndarray | None,
            targets: np.ndarray | None
            ) -> tuple[dict[str, Any], np.ndarray, dict[str, np.ndarray]]:
    """The metrics, the confusion counts and scores.npz's per-video arrays, single- or
    (``targets`` given) multi-label."""
    top5 = min(M.TOPK, len(names))
    if targets is None:
        summary = M.summarize(probs, labels, names, clip_probs, clip_labels)
        cm = M.confusion_matrix(M.predict(probs), labels, len(names))
        return summary, cm, {"top1_correct": M.topk_correct(probs, labels, 1),
                             "top5_correct": M.topk_correct(probs, labels, top5)}
    targets = np.asarray(targets).astype(np.uint8)
    summary = ML.summarize_multilabel(probs, targets, names, clip_probs)
    return summary, ML.label_confusion(probs, targets), {
        "top1_correct": M.multilabel_topk_correct(probs, targets, 1),
        "top5_correct": M.multilabel_topk_correct(probs, targets, top5), "targets": targets}


def _label_text(labels: np.ndarray, targets: np.ndarray | None, names: list[str]) -> list[str]:
    """predictions.csv's ``label`` column: the class, or every label joined by ``|``."""
    if targets is None:
        return [names[i] for i in labels]
    return ["|".join(names[c] for c in np.flatnonzero(row)) for row in targets]


def _write_tables(out: Path, summary: dict[str, Any], cm: np.ndarray, probs: np.ndarray,
                  labels: list[str], paths: list[str], names: list[str]) -> None:
    """per_class.csv (with ``ap`` when multi-label), confusions.csv and predictions.csv
    (top-5 labels and probabilities)."""
    top5 = min(M.TOPK, len(names))
    pc = summary["per_class"]
    ap = ["ap"] if summary.get("multi_label") else []
    write_text_atomic(out / "per_class.csv", _csv_text(
        [["class", "index", "n", *ap, "top1", "top5"]]
        + [[n, i, pc[n]["n"], *(_fmt(pc[n][k]) for k in ap), _fmt(pc[n]["top1"]),
            _fmt(pc[n]["top5"])] for i, n in enumerate(names)]))
    write_text_atomic(out / "confusions.csv", _csv_text(
        [["actual \\ predicted", *names]] + [[n, *cm[i].tolist()] for i, n in enumerate(names)]))
    best = M.topk_indices(probs, top5) if len(labels) else np.zeros((0, top5), np.int64)
    header = ["path", "label"] + [f"{kind}{r}" for r in range(1, top5 + 1)
                                  for kind in ("pred", "prob")]
    rows: list[list[Any]] = [header]
    for i, path in enumerate(paths):
        row: list[Any] = [path, labels[i]]
        for c in best[i]:
            row += [names[c], f"{probs[i, c]:.6f}"]
        rows.append(row)
    write_text_atomic(out / "predictions.csv", _csv_text(rows))


def per_class_arrays(names: Sequence[str], metrics: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """Per-class ``(top1, top5, n)`` float arrays ``(K,)`` from metrics.json; NaN = no videos."""
    pc = metrics["per_class"]

    def arr(key: str) -> np.ndarray:
        return np.array([np.nan if pc[n][key] is None else pc[n][key] for n in names], float)

    return arr("top1"), arr("top5"), arr("n")


def write_plots(out: Path, names: Sequence[str], metrics: dict[str, Any], cm: np.ndarray,
                title: str = "") -> None:
    """The three PNGs of an evaluation folder."""
    from momentlens.analysis import plots

    top1, top5, _ = per_class_arrays(names, metrics)
    plots.save_png(plots.fig_per_class_bars(names, top1, top5, f"{title}: per-class accuracy"),
                   out / PLOTS["per_class"])
    plots.save_png(plots.fig_top5_histogram(top5, f"{title}: top-5 accuracy per class"),
                   out / PLOTS["top5_hist"])
    classes = plots.confused_classes(metrics["most_confused"], names)
    plots.save_png(plots.fig_confusion_heatmap(cm, names, classes,
                                               f"{title}: most confused classes"),
                   out / PLOTS["confusion"])


def read_evaluation(eval_dir: str | os.PathLike[str]) -> EvalResult:
    """Load an evaluation folder written by :func:`write_evaluation`."""
    d = Path(eval_dir)
    if not d.is_dir():
        raise MomentlensError(f"{d}: not an evaluation folder (does not exist or is not a folder)")
    mpath, spath = d / METRICS_FILE, d / SCORES_FILE
    for p in (mpath, spath):
        if not p.is_file():
            raise MomentlensError(f"{p}: missing; is {d} an evaluation folder written by "
                                  "`momentlens evaluate` (one stopped part-way has no "
                                  f"{METRICS_FILE}: run it again)?")
    try:
        metrics = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MomentlensError(f"{mpath}: cannot read JSON: {exc}") from exc
    for key in ("top1", "top5", "per_class", "most_confused"):
        if key not in metrics:
            raise MomentlensError(f"{mpath}: missing key {key!r}")
    try:
        with np.load(spath, allow_pickle=False) as z:
            missing = [k for k in _SCORE_KEYS if k not in z.files]
            if missing:
                raise MomentlensError(f"{spath}: missing array(s) {', '.join(missing)}")
            arrays = {k: z[k] for k in _SCORE_KEYS}
            targets = z["targets"] if "targets" in z.files else None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise MomentlensError(f"{spath}: cannot read: {exc}") from exc
    names = [str(n) for n in arrays["class_names"]]
    if list(metrics["per_class"]) != names:
        raise MomentlensError(f"{mpath}: per_class classes do not match {spath}")
    return EvalResult(dir=d, metrics=metrics, probs=arrays["video_probs"],
                      labels=arrays["labels"].astype(np.int64),
                      paths=[str(p) for p in arrays["paths"]], class_names=names,
                      top1_correct=arrays["top1_correct"].astype(bool),
                      top5_correct=arrays["top5_correct"].astype(bool), targets=targets)
