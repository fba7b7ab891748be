"""Comparing two evaluations of the same classes: per-class differences, shared
confusions and a paired McNemar test of top-1 correctness (section 5.4 of the paper).
Two multi-label evaluations (M-MiT) are compared by per-class AP differences and a
paired bootstrap of mAP (:func:`momentlens.analysis.multilabel.bootstrap_map`) instead.

All differences are **B - A**: positive means the second evaluation is better.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from momentlens.analysis import metrics as M
from momentlens.analysis import multilabel as ML
from momentlens.analysis.evalio import EvalResult, per_class_arrays, read_evaluation
from momentlens.utils import MomentlensError, write_text_atomic

COMPARISON_FILE = "comparison.json"
PLOTS = {"top5_hists": "top5_hists.png", "differences": "per_class_diff.png"}
SHARED_TOP = 20  # shared confusions: pairs in both models' 20 most confused


def _as_eval(x: EvalResult | str | os.PathLike[str]) -> EvalResult:
    return x if isinstance(x, EvalResult) else read_evaluation(x)


def _names(a: EvalResult, b: EvalResult, name_a: str | None, name_b: str | None
           ) -> tuple[str, str]:
    na, nb = name_a or a.name, name_b or b.name
    if na == nb:  # e.g. the same model evaluated twice: keep the two apart
        na, nb = f"{na} ({a.dir.name})", f"{nb} ({b.dir.name})"
        if na == nb:
            na, nb = f"{na} [A]", f"{nb} [B]"
    return na, nb


def _check_classes(a: EvalResult, b: EvalResult) -> None:
    if a.class_names == b.class_names:
        return
    only_a = sorted(set(a.class_names) - set(b.class_names))
    only_b = sorted(set(b.class_names) - set(a.class_names))
    detail = (f"only in A: {only_a[:5]}, only in B: {only_b[:5]}" if only_a or only_b
              else "same classes in a different order")
    raise MomentlensError(f"{a.dir} and {b.dir} have different class lists ({detail}); "
                          "only evaluations on the same classes can be compared")


def _paired(a: EvalResult, b: EvalResult) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Indices into A and B of the videos both scored, matched by path (sorted by path)."""
    ib = {p: i for i, p in enumerate(b.paths)}
    common = sorted(set(a.paths) & set(ib))
    ia = {p: i for i, p in enumerate(a.paths)}
    idx_a = np.array([ia[p] for p in common], dtype=np.int64)
    idx_b = np.array([ib[p] for p in common], dtype=np.int64)
    bad = [p for p, i, j in zip(common, idx_a, idx_b) if a.labels[i] != b.labels[j]
           or (a.targets is not None and b.targets is not None
               and not np.array_equal(a.targets[i], b.targets[j]))]
    if bad:
        raise MomentlensError(f"{len(bad)} video(s) have different labels in {a.dir} and "
                              f"{b.dir}, e.g. {bad[0]}")
    counts = {"paired": len(common), "only_a": len(a.paths) - len(common),
              "only_b": len(b.paths) - len(common)}
    return idx_a, idx_b, counts


def _none(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _ranked(names: list[str], va: np.ndarray, vb: np.ndarray, n: np.ndarray, sign: int
            ) -> list[dict[str, Any]]:
    """Classes where ``sign * (B - A) > 0``, largest difference first, ties by name."""
    d = vb - va
    idx = [i for i in range(len(names)) if not np.isnan(d[i]) and sign * d[i] > 0]
    idx.sort(key=lambda i: (-abs(d[i]), names[i]))
    return [{"class": names[i], "a": float(va[i]), "b": float(vb[i]), "diff": float(d[i]),
             "n": int(n[i])} for i in idx]


def _shared_confusions(a: EvalResult, b: EvalResult) -> list[dict[str, Any]]:
    k = len(a.class_names)
    conf = {}
    for key, ev in (("a", a), ("b", b)):
        cm = M.confusion_matrix(M.predict(ev.probs), ev.labels, k)
        conf[key] = {(r["actual"], r["predicted"]): r
                     for r in M.most_confused(cm, ev.class_names, top=SHARED_TOP)}
    rows = [{"actual": act, "predicted": pred,
             "freq_a": conf["a"][(act, pred)]["freq"], "freq_b": conf["b"][(act, pred)]["freq"],
             "count_a": conf["a"][(act, pred)]["count"],
             "count_b": conf["b"][(act, pred)]["count"]}
            for (act, pred) in set(conf["a"]) & set(conf["b"])]
    rows.sort(key=lambda r: (-(r["freq_a"] + r["freq_b"]), r["actual"], r["predicted"]))
    return rows


def compute_comparison(
    eval_a: EvalResult | str | os.PathLike[str], eval_b: EvalResult | str | os.PathLike[str],
    name_a: str | None = None, name_b: str | None = None,
) -> dict[str, Any]:
    """The content of comparison.json, computed in memory (nothing is written)."""
    a, b = _as_eval(eval_a), _as_eval(eval_b)
    _check_classes(a, b)
    na, nb = _names(a, b, name_a, name_b)
    if a.multi_label or b.multi_label:
        return _multilabel_comparison(a, b, na, nb)
    names = a.class_names
    a1, a5, an = per_class_arrays(names, a.metrics)
    b1, b5, bn = per_class_arrays(names, b.metrics)
    idx_a, idx_b, counts = _paired(a, b)
    test = M.mcnemar(a.top1_correct[idx_a], b.top1_correct[idx_b])
    n_min = np.minimum(an, bn)
    overall = {}
    for key in ("top1", "top5", "mean_class_top1"):
        va, vb = a.metrics.get(key), b.metrics.get(key)
        overall[key] = {"a": va, "b": vb,
                        "diff": None if va is None or vb is None else vb - va}
    n_pair = counts["paired"]
    paired_acc = {"a": float(a.top1_correct[idx_a].mean()) if n_pair else None,
                  "b": float(b.top1_correct[idx_b].mean()) if n_pair else None}
    return {
        "a": {"name": na, "folder": a.dir.name, "model": a.metrics.get("model"),
              "num_videos": len(a.paths)},
        "b": {"name": nb, "folder": b.dir.name, "model": b.metrics.get("model"),
              "num_videos": len(b.paths)},
        "num_classes": len(names),
        "difference": "b - a",
        "overall": overall,
        "mcnemar_top1": {**test, **counts, "top1_a": paired_acc["a"], "top1_b": paired_acc["b"],
                         "note": "b = videos A gets right and B wrong, c = A wrong and B right"},
        "a_better": {"top1": _ranked(names, a1, b1, n_min, -1),
                     "top5": _ranked(names, a5, b5, n_min, -1)},
        "b_better": {"top1": _ranked(names, a1, b1, n_min, +1),
                     "top5": _ranked(names, a5, b5, n_min, +1)},
        "shared_confusions": _shared_confusions(a, b),
        "per_class": {n: {"n_a": int(an[i]), "n_b": int(bn[i]),
                          "top1_a": _none(a1[i]), "top1_b": _none(b1[i]),
                          "top1_diff": _none(b1[i] - a1[i]),
                          "top5_a": _none(a5[i]), "top5_b": _none(b5[i]),
                          "top5_diff": _none(b5[i] - a5[i])}
                      for i, n in enumerate(names)},
        "plots": dict(PLOTS),
    }


def _multilabel_comparison(a: EvalResult, b: EvalResult, na: str, nb: str) -> dict[str, Any]:
    """:func:`compute_comparison` of two multi-label evaluations: overall top-1/top-5/mAP,
    ``bootstrap_map`` (paired, B - A), classes ranked by AP difference (``a_better`` /
    ``b_better`` under ``ap``), shared "predicted in place of a missing label" pairs."""
    if a.targets is None or b.targets is None:
        raise MomentlensError(f"{a.dir if a.targets is None else b.dir} is not a multi-label "
                              "evaluation: a multi-label one is compared only with another")
    names = a.class_names
    idx_a, idx_b, counts = _paired(a, b)
    per: dict[str, dict[str, np.ndarray]] = {}
    for side, ev in (("a", a), ("b", b)):
        pc = ev.metrics["per_class"]
        per[side] = {k: np.array([np.nan if pc[n].get(k) is None else pc[n][k] for n in names],
                                 float) for k in ("ap", "top1", "top5", "n")}
    n_min = np.minimum(per["a"]["n"], per["b"]["n"])
    overall = {}
    for key in ("top1", "top5", "mean_class_top1", "map_macro", "map_micro"):
        va, vb = a.metrics.get(key), b.metrics.get(key)
        overall[key] = {"a": va, "b": vb, "diff": None if va is None or vb is None else vb - va}
    test = ML.bootstrap_map(a.probs[idx_a], b.probs[idx_b], a.targets[idx_a])
    shared = {(r["actual"], r["predicted"]): r for r in a.metrics["most_confused"]}
    return {
        "a": {"name": na, "folder": a.dir.name, "model": a.metrics.get("model"),
              "num_videos": len(a.paths)},
        "b": {"name": nb, "folder": b.dir.name, "model": b.metrics.get("model"),
              "num_videos": len(b.paths)},
        "num_classes": len(names), "multi_label": True, "difference": "b - a",
        "overall": overall, "bootstrap_map": {**test, **counts},
        **{side: {k: _ranked(names, per["a"][k], per["b"][k], n_min, sign)
                  for k in ("ap", "top1", "top5")}
           for side, sign in (("a_better", -1), ("b_better", +1))},
        "shared_confusions": sorted(
            ({"actual": r["actual"], "predicted": r["predicted"],
              "freq_a": shared[(r["actual"], r["predicted"])]["freq"], "freq_b": r["freq"],
              "count_a": shared[(r["actual"], r["predicted"])]["count"], "count_b": r["count"]}
             for r in b.metrics["most_confused"] if (r["actual"], r["predicted"]) in shared),
            key=lambda r: (-(r["freq_a"] + r["freq_b"]), r["actual"], r["predicted"])),
        "per_class": {n: {"n_a": int(per["a"]["n"][i]), "n_b": int(per["b"]["n"][i]),
                          **{f"{k}_{s}": _none(per[s][k][i]) for k in ("ap", "top1", "top5")
                             for s in ("a", "b")},
                          **{f"{k}_diff": _none(per["b"][k][i] - per["a"][k][i])
                             for k in ("ap", "top1", "top5")}}
                      for i, n in enumerate(names)},
        "plots": dict(PLOTS),
    }


def comparison_figures(comp: dict[str, Any]) -> dict[str, Any]:
    """The comparison's figures, keyed like ``PLOTS``."""
    from momentlens.analysis import plots

    names = list(comp["per_class"])
    pc = comp["per_class"]

    def arr(key: str) -> np.ndarray:
        return np.array([np.nan if pc[n][key] is None else pc[n][key] for n in names], float)

    na, nb = comp["a"]["name"], comp["b"]["name"]
    return {
        "top5_hists": plots.fig_top5_histograms_overlaid(arr("top5_a"), arr("top5_b"), na, nb),
        "differences": plots.fig_difference_bars(names, arr("top1_diff"), arr("top5_diff"),
                                                 na, nb),
    }


def compare_evaluations(
    eval_a: EvalResult | str | os.PathLike[str], eval_b: EvalResult | str | os.PathLike[str],
    out_dir: str | os.PathLike[str], name_a: str | None = None, name_b: str | None = None,
) -> dict[str, Any]:
    """Compare two evaluation folders; write comparison.json and the plots into ``out_dir``."""
    from momentlens.analysis import plots

    comp = compute_comparison(eval_a, eval_b, name_a, name_b)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for key, fig in comparison_figures(comp).items():
        plots.save_png(fig, out / PLOTS[key])
    write_text_atomic(out / COMPARISON_FILE, json.dumps(comp, indent=2, allow_nan=False) + "\n")
    return comp


def read_comparison(comp_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Load comparison.json from a folder written by :func:`compare_evaluations`."""
    path = Path(comp_dir) / COMPARISON_FILE
    if not path.is_file():
        raise MomentlensError(f"{path}: missing; is {comp_dir} a folder written by "
                              "`momentlens compare`?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise MomentlensError(f"{path}: cannot read JSON: {exc}") from exc


def describe(comp: dict[str, Any]) -> str:
    """A few lines for people (percentages)."""
    na, nb = comp["a"]["name"], comp["b"]["name"]
    lines = []
    for key, label in (("top1", "top-1"), ("top5", "top-5")):
        o = comp["overall"][key]
        if o["a"] is not None and o["b"] is not None:
            lines.append(f"{label}: {na} {o['a'] * 100:.1f}%  {nb} {o['b'] * 100:.1f}%  "
                         f"({nb} - {na}: {o['diff'] * 100:+.1f} points)")
    if comp.get("multi_label"):
        o = comp["overall"]["map_macro"]
        if o["a"] is not None and o["b"] is not None:
            lines.append(f"macro mAP: {na} {o['a'] * 100:.1f}  {nb} {o['b'] * 100:.1f}")
        lines.append(ML.describe_bootstrap(comp["bootstrap_map"], na, nb))
        return "\n".join(lines + _better_lines(comp, na, nb, "ap"))
    t = comp["mcnemar_top1"]
    lines.append(f"McNemar on top-1 over {t['paired']} paired videos: b={t['b']} c={t['c']}, "
                 f"exact p={t['p_exact']:.3g}, chi2 p={t['p_chi2']:.3g}")
    return "\n".join(lines + _better_lines(comp, na, nb, "top1"))


def _better_lines(comp: dict[str, Any], na: str, nb: str, key: str) -> list[str]:
    lines = []
    for side, name in (("b_better", nb), ("a_better", na)):
        best = comp[side][key][:5]
        if best:
            lines.append(f"{name} better on ({key.replace('top1', 'top-1')}): " + ", ".join(
                f"{r['class']} {r['diff'] * 100:+.1f}" for r in best))
    return lines
