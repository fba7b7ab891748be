"""One self-contained HTML page for people: headline table, per-class plots,
most-confused tables, model comparisons and example predictions.

Images are embedded as base64 PNG data URIs; the page has no scripts, no external
URLs and no timestamps, so it renders offline and equal inputs give equal bytes.
Every name that comes from data (classes, models, paths) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from momentlens import __version__
from momentlens.analysis import compare as C
from momentlens.analysis import metrics as M
from momentlens.analysis import multilabel as ML
from momentlens.analysis.evalio import PLOTS, EvalResult, per_class_arrays, read_evaluation
from momentlens.utils import MomentlensError, write_text_atomic

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0}th,td{padding:.25em .7em;border-bottom:1px solid #ddd}
th{background:#f3f3f3;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;display:block;margin:.8em 0;border:1px solid #eee}
.muted{color:#666}.example{margin:.8em 0;padding:.5em .8em;background:#fafafa;border-left:3px solid #4C72B0}
.example .gt{font-weight:600}.truth{font-weight:700;color:#1a7f37}.warn{color:#a40}
.plots{display:flex;flex-wrap:wrap;gap:1em}.plots figure{margin:0;flex:1 1 480px}
figcaption{font-size:1em}.cam-gallery{margin:1.2em 0}.cam-gallery img{width:100%}
.cam-gallery figcaption{font-size:1.05em;font-weight:600;color:#222}
.no-plot{font-style:italic;padding:.6em .8em;background:#fafafa;border-left:3px solid #ccc}
"""

_e = html.escape


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "&ndash;"
    return f"{x * 100:+.1f}" if signed else f"{x * 100:.1f}"


def _img(png: bytes, alt: str, caption: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption class='muted'>{_e(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{_e(alt)}">{cap}</figure>'


def _no_plot(text: str) -> str:
    """What stands where a plot would show nothing: a sentence, never an empty box."""
    return f"<p class='no-plot muted'>{_e(text)}</p>"


def one_bar(*per_class: np.ndarray) -> bool:
    """Whether the per-class accuracies of every array fall into one histogram bar (or
    there are none): a histogram would then show a single bar."""
    vals = [np.asarray(a, float) for a in per_class]
    vals = np.concatenate([v[~np.isnan(v)] for v in vals]) * 100
    return int(np.count_nonzero(np.histogram(vals, bins=np.linspace(0, 100, 21))[0])) <= 1


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], cls: str, num_from: int = 1,
           table_id: str = "") -> str:
    """Cells are already-escaped HTML; columns from ``num_from`` on are right-aligned."""
    ident = f' id="{_e(table_id)}"' if table_id else ""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if j >= num_from else f"<td>{c}</td>"
                         for j, c in enumerate(r)) + "</tr>" for r in rows)
    return f'<table class="{cls}"{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _eval_png(ev: EvalResult, key: str) -> bytes:
    """The PNG from the evaluation folder, or rendered from its data if the file is missing."""
    path = ev.dir / PLOTS[key]
    if path.is_file():
        return path.read_bytes()
    from momentlens.analysis import plots

    top1, top5, _ = per_class_arrays(ev.class_names, ev.metrics)
    if key == "per_class":
        fig = plots.fig_per_class_bars(ev.class_names, top1, top5, f"{ev.name}: per-class accuracy")
    elif key == "top5_hist":
        fig = plots.fig_top5_histogram(top5, f"{ev.name}: top-5 accuracy per class")
    else:
        cm = (ML.label_confusion(ev.probs, ev.targets) if ev.multi_label
              else M.confusion_matrix(M.predict(ev.probs), ev.labels, len(ev.class_names)))
        classes = plots.confused_classes(ev.metrics["most_confused"], ev.class_names)
        fig = plots.fig_confusion_heatmap(cm, ev.class_names, classes,
                                          f"{ev.name}: most confused classes")
    return plots.png_bytes(fig)


def _headline(evals: Sequence[EvalResult], names: Sequence[str]) -> str:
    rows = []
    for ev, name in zip(evals, names):
        m = ev.metrics
        scored = m.get("num_scored", m.get("num_videos"))
        listed = m.get("num_listed", scored)
        rows.append([_e(name), _pct(m.get("top1")), _pct(m.get("top5")),
                     _pct(m.get("mean_class_top1")), _pct(m.get("clip_top1")),
                     f"{scored} / {listed}"])
    return _table(["Method", "Top-1 (%)", "Top-5 (%)", "Mean class top-1 (%)", "Clip top-1 (%)",
                   "Videos scored / listed"], rows, "headline", table_id="headline")


def _confused_table(pairs: Sequence[dict[str, Any]], top: int = 20) -> str:
    if not pairs:
        return _no_plot("No confusions: every scored video's top-1 class is its true class, "
                        "so there is no confusion heat map to show.")
    rows = [[f"{p['freq']:.3f}", _e(p["actual"]), _e(p["predicted"]), str(p["count"])]
            for p in pairs[:top]]
    return _table(["Freq", "Actual", "Predicted", "Count"], rows, "confused", num_from=3)


def _cam_block(cam: Any) -> str:
    if not isinstance(cam, dict):
        return ""
    rows = [[_e(k.replace("_", " ")), f"{cam[k]:.3f}"] for k in ("pointing", "iou")
            if isinstance(cam.get(k), (int, float))]
    out = "<h3>Class activation maps</h3>" + _table(["CAM metric", "Value"], rows, "cam")
    per_class = cam.get("per_class")
    if isinstance(per_class, dict) and per_class:
        keys = sorted({k for v in per_class.values() if isinstance(v, dict) for k in v})
        prow = [[_e(str(c))] + [_fmt_any(v.get(k)) if isinstance(v, dict) else _fmt_any(v)
                                for k in keys] for c, v in sorted(per_class.items())]
        out += ("<details><summary>CAM metrics per class</summary>"
                + _table(["Class", *(_e(k) for k in keys)] if keys else ["Class", "Value"],
                         prow, "cam-per-class") + "</details>")
    return out


def _fmt_any(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else _e(str(v)) if v is not None else "&ndash;"


def _eval_section(ev: EvalResult, name: str, idx: int) -> str:
    m = ev.metrics
    meta = ", ".join(f"{k}: {_e(str(m[k]))}" for k in ("data", "split") if m.get(k) is not None)
    scored = m.get("num_scored", m.get("num_videos"))
    listed = m.get("num_listed", scored)
    parts = [f'<section class="eval" id="eval-{idx}"><h2>{_e(name)}</h2>',
             f"<p class='muted'>{meta}</p>" if meta else "",
             f"<p>Scored <b>{scored}</b> of <b>{listed}</b> listed videos.</p>"]
    unreadable = m.get("unreadable") or []
    if unreadable:
        items = "".join(f"<li>{_e(str(u))}</li>" for u in unreadable)
        parts.append(f"<details class='warn'><summary>{len(unreadable)} unreadable video(s), "
                     f"not scored</summary><ul>{items}</ul></details>")
    parts.append(_cam_block(m.get("cam")))
    top5 = per_class_arrays(ev.class_names, m)[1]
    hist = (_no_plot(f"Every class has a top-5 accuracy of about {_pct(np.nanmean(top5))}%, "
                     "so the histogram of per-class top-5 accuracy would be a single bar.")
            if one_bar(top5) else
            _img(_eval_png(ev, "top5_hist"), f"{name}: top-5 histogram",
                 "Top-5 accuracy distribution per class (cf. the paper's Figures 2-3)"))
    parts.append("<div class='plots'>"
                 + _img(_eval_png(ev, "per_class"), f"{name}: per-class accuracy") + hist
                 + "</div>")
    parts.append("<h3>Classes most often predicted in place of a missing label</h3>"
                 if ev.multi_label else "<h3>Most confused categories</h3>")
    parts.append(_confused_table(m["most_confused"]))
    if m["most_confused"]:  # no confusions: the sentence above, no empty heat map
        parts.append(_img(_eval_png(ev, "confusion"), f"{name}: confusion heat map"))
    pc = m["per_class"]
    ap = ["ap"] if ev.multi_label else []  # multi-label: per-class AP, open by default
    rows = [[_e(c), str(v["n"]), *(_pct(v[k]) for k in ap), _pct(v["top1"]), _pct(v["top5"])]
            for c, v in pc.items()]
    parts.append(f"<details{' open' if ap else ''}><summary>All classes</summary>"
                 + _table(["Class", "Videos", *(["AP (%)"] if ap else []), "Top-1 (%)",
                           "Top-5 (%)"], rows, "per-class")
                 + "</details></section>")
    return "".join(parts)


def _ranked_table(rows: Sequence[dict[str, Any]], na: str, nb: str, top: int = 10) -> str:
    if not rows:
        return "<p class='muted'>None.</p>"
    body = [[_e(r["class"]), _pct(r["a"]), _pct(r["b"]), _pct(r["diff"], signed=True), str(r["n"])]
            for r in rows[:top]]
    return _table(["Class", f"{_e(na)} (%)", f"{_e(nb)} (%)", "Difference (points)", "Videos"],
                  body, "ranked")


def _comparison_section(comp: dict[str, Any], pngs: dict[str, bytes]) -> str:
    na, nb = comp["a"]["name"], comp["b"]["name"]
    empty = _empty_comparison_plots(comp)
    o = comp["overall"]
    rows = [[label, _pct(o[k]["a"]), _pct(o[k]["b"]), _pct(o[k]["diff"], signed=True)]
            for k, label in (("top1", "Top-1"), ("top5", "Top-5"),
                             ("mean_class_top1", "Mean class top-1"),
                             ("map_macro", "mAP macro"), ("map_micro", "mAP micro")) if k in o]
    parts = [f'<section class="comparison"><h2>{_e(na)} vs {_e(nb)}</h2>',
             _table(["Metric (%)", _e(na), _e(nb), f"{_e(nb)} &minus; {_e(na)}"], rows,
                    "overall"), _test_sentence(comp, na, nb)]
    keys = (("ap", "AP"),) if comp.get("multi_label") else ()
    for side, who in (("b_better", nb), ("a_better", na)):
        for k, label in (*keys, ("top1", "top-1"), ("top5", "top-5")):
            parts.append(f"<h3>{_e(who)} better ({label})</h3>"
                         + _ranked_table(comp[side][k], na, nb))
    shared = comp["shared_confusions"]
    parts.append("<h3>Confusions both models share</h3>")
    if shared:
        srows = [[_e(r["actual"]), _e(r["predicted"]), f"{r['freq_a']:.3f}", f"{r['freq_b']:.3f}"]
                 for r in shared]
        parts.append(_table(["Actual", "Predicted", f"Freq {_e(na)}", f"Freq {_e(nb)}"], srows,
                            "shared", num_from=2))
    else:
        parts.append("<p class='muted'>No pair is among both models' most confused.</p>")
    parts.append("<div class='plots'>" + "".join(
        _no_plot(empty[k]) if k in empty else _img(pngs[k], f"{na} vs {nb}: {k}")
        for k in C.PLOTS if k in pngs or k in empty) + "</div></section>")
    return "".join(parts)


def _test_sentence(comp: dict[str, Any], na: str, nb: str) -> str:
    """The paired test: McNemar on top-1, or (multi-label) the bootstrap of mAP."""
    if comp.get("multi_label"):
        return f"<p>{_e(ML.describe_bootstrap(comp['bootstrap_map'], na, nb))}</p>"
    t = comp["mcnemar_top1"]
    verdict = ("significant at the 5% level" if t["p_exact"] < 0.05
               else "not significant at the 5% level")
    return (f"<p>Paired McNemar test of top-1 correctness over the {t['paired']} videos both "
            f"scored: {t['b']} right only by {_e(na)}, {t['c']} right only by {_e(nb)}; exact "
            f"two-sided p = {t['p_exact']:.3g} (chi-square with continuity correction: p = "
            f"{t['p_chi2']:.3g}), {verdict}.</p>")


def _empty_comparison_plots(comp: dict[str, Any]) -> dict[str, str]:
    """The comparison plots that would show nothing, each with the sentence instead."""
    pc = comp["per_class"].values()
    na, nb = comp["a"]["name"], comp["b"]["name"]

    def arr(key: str) -> np.ndarray:
        return np.array([np.nan if r[key] is None else r[key] for r in pc], float)

    out = {}
    if one_bar(arr("top5_a"), arr("top5_b")):
        out["top5_hists"] = (f"{na} and {nb} give every class about the same top-5 accuracy: "
                             "the histograms would be a single bar.")
    if not np.nan_to_num(np.concatenate([arr("top1_diff"), arr("top5_diff")])).any():
        out["differences"] = (f"No class differs between {na} and {nb} in top-1 or top-5 "
                              "accuracy: there are no per-class differences to plot.")
    return out


def format_top5(probs: np.ndarray, class_names: Sequence[str], k: int = 5) -> str:
    """One video's predictions in the paper's Figure 5 format: ``1: grilling (0.620) 2: ...``."""
    best = M.topk_indices(np.asarray(probs)[None, :], k)[0]
    return " ".join(f"{r}: {class_names[c]} ({probs[c]:.3f})" for r, c in enumerate(best, 1))


def _examples(evals: Sequence[EvalResult], names: Sequence[str], n: int) -> str:
    common = set(evals[0].paths)
    for ev in evals[1:]:
        common &= set(ev.paths)
    if not common or n <= 0:
        return ""
    first = evals[0]
    pos = [{p: i for i, p in enumerate(ev.paths)} for ev in evals]
    # Confident mistakes of the first model first (the paper's "missed detections"),
    # then correct predictions; ties by path, so the choice is deterministic.
    def key(p: str) -> tuple[bool, float, str]:
        i = pos[0][p]
        return bool(first.top1_correct[i]), -float(first.probs[i].max()), p

    chosen = sorted(common, key=key)[:n]
    out = ["<section id='examples'><h2>Example predictions</h2>"]
    for p in chosen:
        truth = first.class_names[first.labels[pos[0][p]]]
        lines = []
        for ev, name, where in zip(evals, names, pos):
            text = _e(format_top5(ev.probs[where[p]], ev.class_names))
            text = text.replace(f" {_e(truth)} (", f" <span class='truth'>{_e(truth)}</span> (")
            lines.append(f"<div>{_e(name)} Top 5 Predictions: {text}</div>")
        out.append(f"<div class='example'><div class='muted'>{_e(p)}</div>"
                   f"<div class='gt'>Ground Truth: {_e(truth)}</div>{''.join(lines)}</div>")
    out.append("</section>")
    return "".join(out)


def _unique_names(evals: Sequence[EvalResult]) -> list[str]:
    names = [ev.name for ev in evals]
    return [f"{n} ({ev.dir.name})" if names.count(n) > 1 else n for n, ev in zip(names, evals)]


def _comparisons(evals: Sequence[EvalResult], names: Sequence[str],
                 comparisons: Sequence[str | os.PathLike[str] | dict[str, Any]] | None) -> str:
    from momentlens.analysis import plots

    out = []
    if comparisons is None:  # the first evaluation is the baseline
        for ev, name in zip(evals[1:], names[1:]):
            try:
                comp = C.compute_comparison(evals[0], ev, names[0], name)
            except MomentlensError as exc:
                out.append(f"<section class='comparison'><h2>{_e(names[0])} vs {_e(name)}</h2>"
                           f"<p class='warn'>Not compared: {_e(str(exc))}</p></section>")
                continue
            pngs = {k: plots.png_bytes(f) for k, f in C.comparison_figures(comp).items()}
            out.append(_comparison_section(comp, pngs))
        return "".join(out)
    for item in comparisons:
        if isinstance(item, dict):
            pngs = {k: plots.png_bytes(f) for k, f in C.comparison_figures(item).items()}
            out.append(_comparison_section(item, pngs))
            continue
        comp = C.read_comparison(item)
        pngs = {k: (Path(item) / f).read_bytes() for k, f in C.PLOTS.items()
                if (Path(item) / f).is_file()}
        missing = [k for k in C.PLOTS if k not in pngs]
        if missing:
            figs = C.comparison_figures(comp)
            pngs.update({k: plots.png_bytes(figs[k]) for k in missing})
        out.append(_comparison_section(comp, pngs))
    return "".join(out)


def _extra(title: str, html_text: str) -> str:
    # The caller's HTML is trusted (CAM galleries, findings); only the title is escaped.
    return f"<section class='extra'><h2>{_e(title)}</h2>{html_text}</section>"


def render_report(
    eval_dirs: Sequence[str | os.PathLike[str]],
    comparisons: Sequence[str | os.PathLike[str] | dict[str, Any]] | None = None,
    title: str = "momentlens evaluation report",
    extra_sections: Sequence[tuple[str, str]] | None = None,
    num_examples: int = 6,
    lead_sections: Sequence[tuple[str, str]] | None = None,
) -> str:
    """The report as an HTML string (see :func:`write_report`)."""
    if not eval_dirs:
        raise MomentlensError("report needs at least one evaluation folder")
    evals = [read_evaluation(d) for d in eval_dirs]
    names = _unique_names(evals)
    body = [f"<h1>{_e(title)}</h1>", "<h2>Results</h2>", _headline(evals, names),
            "<p class='muted'>Accuracies are video-level: softmax scores averaged over each "
            "video's clips and crops.</p>"]
    body += [_extra(t, h) for t, h in lead_sections or ()]
    body += [_eval_section(ev, name, i) for i, (ev, name) in enumerate(zip(evals, names))]
    if len(evals) >= 2 or comparisons:
        body.append(_comparisons(evals, names, comparisons))
    body.append(_examples(evals, names, num_examples))
    body += [_extra(t, h) for t, h in extra_sections or ()]
    body.append(f"<hr><p class='muted'>Written by momentlens {_e(__version__)}.</p>")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(b for b in body if b) + "\n</body></html>\n")


def write_report(
    eval_dirs: Sequence[str | os.PathLike[str]],
    out_html: str | os.PathLike[str],
    comparisons: Sequence[str | os.PathLike[str] | dict[str, Any]] | None = None,
    title: str = "momentlens evaluation report",
    extra_sections: Sequence[tuple[str, str]] | None = None,
    num_examples: int = 6,
    lead_sections: Sequence[tuple[str, str]] | None = None,
) -> Path:
    """Write one self-contained HTML report and return its path.

    ``eval_dirs``: evaluation folders (the first is the baseline of comparisons).
    ``comparisons``: folders written by ``compare`` or dicts from
    :func:`momentlens.analysis.compare.compute_comparison`; when ``None`` and two or more
    evaluations are given, each later one is compared with the first.
    ``extra_sections``: ``(title, html)`` pairs appended as they are (trusted HTML);
    ``lead_sections`` likewise, placed right under the results table (a run's finding).
    A ``"cam"`` key in an evaluation's metrics.json (``{"pointing": f, "iou": f,
    "per_class": {...}}``) is shown in that evaluation's section.
    """
    page = render_report(eval_dirs, comparisons, title, extra_sections, num_examples,
                         lead_sections)
    out = Path(out_html)
    write_text_atomic(out, page)
    print(f"wrote {out}")
    return out
