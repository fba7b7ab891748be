"""Matplotlib figures for evaluations and comparisons (PNG, no windows).

Every ``fig_*`` function returns a ``Figure``; ``save_png`` writes it atomically and
``png_bytes`` renders it in memory for the HTML report. Figures are built with
matplotlib's object API (``Figure`` on an Agg canvas), never through pyplot: nothing
is registered in a global figure manager, no backend is switched for the whole
process, and a figure is freed as soon as the last reference to it goes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from momentlens.utils import atomic_path

DPI = 100
_A_COLOR, _B_COLOR = "#4C72B0", "#DD8452"
# No timestamps or version strings in the PNG, so equal data give equal bytes.
_PNG_META = {"Software": None}


def _figure(figsize: tuple[float, float]) -> Figure:
    # A figure with its own Agg canvas: rendering needs no backend switch and no display.
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata=_PNG_META)
    return buf.getvalue()


def save_png(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Write ``fig`` as PNG to ``path`` atomically."""
    data = png_bytes(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _sort_by_accuracy(names: Sequence[str], top1: np.ndarray, top5: np.ndarray) -> list[int]:
    # Best first: top-1, then top-5, then name; classes without videos are left out.
    keep = [i for i in range(len(names)) if not np.isnan(top1[i])]
    return sorted(keep, key=lambda i: (-top1[i], -top5[i], names[i]))


def fig_per_class_bars(
    names: Sequence[str], top1: np.ndarray, top5: np.ndarray, title: str = ""
) -> Figure:
    """Horizontal bars of per-class top-1 and top-5 accuracy, sorted by accuracy (best on top)."""
    order = _sort_by_accuracy(names, np.asarray(top1, float), np.asarray(top5, float))
    n = max(len(order), 1)
    fig = _figure((7.5, min(2.0 + 0.17 * n, 60.0)))
    ax = fig.subplots()
    y = np.arange(len(order))
    ax.barh(y, [top5[i] * 100 for i in order], color="#C9D7EA", label="top-5")
    ax.barh(y, [top1[i] * 100 for i in order], height=0.5, color=_A_COLOR, label="top-1")
    ax.set_yticks(y, [names[i] for i in order], fontsize=7 if n > 40 else 9)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("accuracy (%)")
    ax.set_title(title or "Per-class accuracy")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


_BINS = np.linspace(0.0, 100.0, 21)


def fig_top5_histogram(top5: np.ndarray, title: str = "") -> Figure:
    """Histogram of per-class top-5 accuracy (the paper's Figures 2 and 3)."""
    vals = np.asarray(top5, float)
    vals = vals[~np.isnan(vals)] * 100
    fig = _figure((6.5, 3.6))
    ax = fig.subplots()
    ax.hist(vals, bins=_BINS, color=_A_COLOR, edgecolor="white")
    ax.set_xlabel("top-5 accuracy of a class (%)")
    ax.set_ylabel("classes")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title or "Top-5 accuracy distribution per class")
    fig.tight_layout()
    return fig


def confused_classes(pairs: Sequence[dict], names: Sequence[str], limit: int = 20) -> list[int]:
    """Indices of the classes named in ``pairs`` (most confused first), at most ``limit``."""
    index = {n: i for i, n in enumerate(names)}
    chosen: list[int] = []
    for pair in pairs:
        for key in ("actual", "predicted"):
            i = index[pair[key]]
            if i not in chosen and len(chosen) < limit:
                chosen.append(i)
    return chosen


def fig_confusion_heatmap(
    cm: np.ndarray, names: Sequence[str], classes: Sequence[int], title: str = ""
) -> Figure:
    """Row-normalised confusion matrix restricted to ``classes`` (rows actual, columns predicted).

    Rows are normalised by the class's full row total, so a cell reads like the
    ``freq`` column of the most-confused table.
    """
    cm = np.asarray(cm, float)
    idx = list(classes)
    k = max(len(idx), 1)
    fig = _figure((min(3.0 + 0.42 * k, 14.0), min(2.6 + 0.4 * k, 13.0)))
    ax = fig.subplots()
    if idx:
        totals = cm.sum(axis=1)[idx]
        sub = cm[np.ix_(idx, idx)] / np.where(totals > 0, totals, 1)[:, None]
        im = ax.imshow(sub, cmap="Blues", vmin=0.0, vmax=max(float(sub.max()), 1e-9))
        labels = [names[i] for i in idx]
        ax.set_xticks(range(len(idx)), labels, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(idx)), labels, fontsize=8)
        if len(idx) <= 20:
            for (r, c), v in np.ndenumerate(sub):
                if v > 0:
                    ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if v > 0.6 * sub.max() else "black")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of actual class")
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
    else:
        ax.text(0.5, 0.5, "no confusions", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title(title or "Most confused classes")
    fig.tight_layout()
    return fig


def fig_top5_histograms_overlaid(
    top5_a: np.ndarray, top5_b: np.ndarray, name_a: str, name_b: str
) -> Figure:
    """Two per-class top-5 histograms on one axis, for comparing models."""
    fig = _figure((6.5, 3.6))
    ax = fig.subplots()
    for vals, name, color in ((top5_a, name_a, _A_COLOR), (top5_b, name_b, _B_COLOR)):
        v = np.asarray(vals, float)
        ax.hist(v[~np.isnan(v)] * 100, bins=_BINS, alpha=0.55, color=color, label=name,
                edgecolor="white")
    ax.set_xlabel("top-5 accuracy of a class (%)")
    ax.set_ylabel("classes")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Top-5 accuracy distribution per class")
    ax.legend()
    fig.tight_layout()
    return fig


def fig_difference_bars(
    names: Sequence[str], diff1: np.ndarray, diff5: np.ndarray, name_a: str, name_b: str,
    top: int = 15,
) -> Figure:
    """Per-class accuracy differences (B - A), the ``top`` largest each way, top-1 and top-5.

    Only the measures with a difference get a panel (labels stay readable at page width);
    with none at all, one panel says so (the report shows a sentence instead)."""
    panels = []
    for diff, label in ((diff1, "top-1"), (diff5, "top-5")):
        d = np.asarray(diff, float)
        valid = [i for i in range(len(names)) if not np.isnan(d[i]) and d[i] != 0]
        pos = sorted((i for i in valid if d[i] > 0), key=lambda i: (-d[i], names[i]))[:top]
        neg = sorted((i for i in valid if d[i] < 0), key=lambda i: (d[i], names[i]))[:top]
        if pos or neg:
            panels.append((d, label, pos + neg[::-1]))
    rows = max([len(order) for _, _, order in panels] + [1])
    fig = _figure((6.0 * max(len(panels), 1), min(1.8 + 0.32 * rows, 14.0)))
    axes = np.atleast_1d(fig.subplots(1, max(len(panels), 1)))
    if not panels:
        axes[0].text(0.5, 0.5, "no per-class differences", ha="center", va="center",
                     fontsize=12, transform=axes[0].transAxes)
        axes[0].set_axis_off()
    for ax, (d, label, order) in zip(axes, panels):
        y = np.arange(len(order))
        ax.barh(y, [d[i] * 100 for i in order],
                color=[_B_COLOR if d[i] > 0 else _A_COLOR for i in order])
        ax.set_yticks(y, [names[i] for i in order], fontsize=11)
        ax.tick_params(axis="x", labelsize=10)
        ax.invert_yaxis()
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(f"{label} difference, {name_b} - {name_a} (points)", fontsize=11)
        ax.set_title(f"{label}: right = {name_b} better", fontsize=12)
    fig.tight_layout()
    return fig
