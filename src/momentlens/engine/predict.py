"""``momentlens predict``: the top-k classes of new videos, one result per video.

How many clips a video gets and what the result says it looked at is
:mod:`momentlens.engine.coverage`'s; the scoring is the evaluation's
(:func:`~momentlens.engine.inference.score_dataset` over a
:class:`~momentlens.engine.evaluate.MultiViewDataset`). An unreadable video gets an
``error`` (its reason in one line) instead of classes, never a substitute's scores.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from momentlens.data.formats import VIDEO_SUFFIXES
from momentlens.engine import coverage
from momentlens.engine.distributed import DistInfo, all_gather_objects
from momentlens.engine.evaluate import MultiViewDataset, views_dataset
from momentlens.engine.feed import loader_workers
from momentlens.engine.inference import (
    InferencePath,
    Normalizer,
    Scores,
    activate,
    join_ranks,
    load_for_inference,
    score_dataset,
)
from momentlens.utils import MomentlensError

# after_each(model, meta, inference path, video, its result): see predict
AfterEach = Callable[[torch.nn.Module, dict[str, Any], InferencePath, Path, dict[str, Any]], None]


def collect_videos(inputs: Sequence[str | Path]) -> list[Path]:
    """Video files named directly, or found (recursively, sorted) in named folders."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() in VIDEO_SUFFIXES
                                and not q.name.startswith(".")))
        elif p.exists():
            found.append(p)
        else:
            raise MomentlensError(f"{p} does not exist")
    if not found:
        raise MomentlensError("no video files found in " + ", ".join(map(str, inputs)))
    return found


def predict(model_path: str | Path, inputs: Sequence[str | Path], topk: int = 5,
            clips: int | None = None, device: str = "auto", batch_size: int = 4,
            workers: int = 0, precision: str = "auto", backend: str = "auto",
            after_each: AfterEach | None = None) -> list[dict[str, Any]]:
    """Top-k classes with probabilities for each video (unreadable ones get an ``error``),
    in the order :func:`collect_videos` finds them; ``precision`` / ``backend``:
    :func:`~momentlens.engine.inference.load_for_inference`. ``after_each(model, meta,
    fast, video, result)`` runs for each readable video and may add to its result.

    Under ``torchrun`` the processes share the videos (each scores its part with its
    share of the cores' loader workers, on its own GPU) and rank 0 returns every result;
    the other ranks return ``[]``."""
    info = join_ranks(device, model_path, backend)  # left to the process's exit (its doc)
    model, meta, fast = load_for_inference(model_path, device, precision, backend,
                                           local_rank=info.local_rank)
    mine = collect_videos(inputs)[info.rank::info.world_size]
    results = predict_loaded(model, meta, fast, mine, topk=topk, clips=clips,
                             batch_size=batch_size, workers=loader_workers(workers, info),
                             bar=info.is_main)
    if after_each is not None:
        for video, result in zip(mine, results):
            if "error" not in result:
                after_each(model, meta, fast, video, result)
    return gather_shares(results, info)


def gather_shares(results: list[dict[str, Any]], info: DistInfo) -> list[dict[str, Any]]:
    """Rank 0: the results of every rank, where rank ``r`` had the items ``r, r + W, r +
    2W, ...`` of ``W`` processes, back in item order; other ranks: ``[]``."""
    if not info.enabled:
        return list(results)
    parts = all_gather_objects(list(results), info)
    if not info.is_main:
        return []
    out: list[dict[str, Any]] = [{} for _ in range(sum(map(len, parts)))]
    for rank, part in enumerate(parts):
        out[rank::info.world_size] = part
    return out


def predict_loaded(model: torch.nn.Module, meta: dict[str, Any], fast: InferencePath,
                   videos: Sequence[Path], topk: int = 5, clips: int | None = None,
                   batch_size: int = 4, workers: int = 0, bar: bool = True
                   ) -> list[dict[str, Any]]:
    """:func:`predict` with a model already loaded (``momentlens.load`` shares it, so the
    API returns exactly what ``momentlens predict --json`` prints).

    ``clips``: clips per video; ``None`` chooses per video (:mod:`.coverage`). Each result
    has ``top`` and ``scored`` (what was looked at), ``warnings`` when the video is
    shorter than one clip, or ``error``: the reason in one line."""
    spec, classes = model.input_spec, meta["classes"]
    multi = {"multi_label": True} if meta.get("multi_label") else {}  # sigmoid: no sum to 1
    out: list[dict[str, Any]] = [{"video": str(v), **multi} for v in videos]
    groups: dict[int, list[int]] = {}
    plans = {}
    for i, video in enumerate(videos):
        try:
            plans[i] = coverage.plan_video(video, spec, clips)
        except Exception as exc:  # noqa: BLE001 - every failure is a one-line result
            out[i]["error"] = coverage.reason(video, exc)
            continue
        groups.setdefault(plans[i].clips, []).append(i)
    for n, members in groups.items():
        probs, errors = _score_group(model, meta, fast, [videos[i] for i in members], n,
                                     batch_size, workers, bar)
        for j, i in enumerate(members):
            if j in errors:
                out[i]["error"] = errors[j]
                continue
            order = np.argsort(-probs[j], kind="stable")[:min(topk, len(classes))]
            out[i]["top"] = [{"class": classes[c], "prob": round(float(probs[j][c]), 6)}
                             for c in order]
            out[i]["scored"] = coverage.scored(plans[i], spec)
            warning = coverage.short_warning(plans[i], spec)
            if warning:
                out[i]["warnings"] = [warning]
    return out


def _score_group(model: torch.nn.Module, meta: dict[str, Any], fast: InferencePath,
                 videos: Sequence[Path], clips: int, batch_size: int, workers: int,
                 bar: bool = True) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """Video probabilities (by position) of videos scored with ``clips`` clips each, and
    the one-line reason of each that failed while decoding."""
    from momentlens.data.layout import VideoRecord

    records = [VideoRecord(path=Path(v).resolve(), label=0, extra={}) for v in videos]
    dataset = views_dataset(model.input_spec, len(meta["classes"]), records, clips, 1)
    with _quiet_substitutes():
        if len(videos) == 1:
            scores = _one(model, dataset, fast, bool(meta.get("multi_label")))
        else:
            with torch.inference_mode():
                scores = score_dataset(model, dataset, fast.device,
                                       fast.normalizer(model, model.input_spec),
                                       batch_size=batch_size, workers=workers, amp=fast.dtype,
                                       desc="predict", sigmoid=bool(meta.get("multi_label")),
                                       bar=bar)
    reasons = {e.get("path"): e.get("reason", "") for e in dataset._read_quarantine()}
    errors = {i: coverage.reason(videos[i], Exception(reasons.get(str(records[i].path), "")
                                                       or "decoding failed"))
              for i in dataset.failed_indices()}
    return dict(zip((int(i) for i in scores.indices), scores.video_probs)), errors


@contextlib.contextmanager
def _quiet_substitutes() -> Iterator[None]:
    """Silence the dataset's training-time warning (a zero clip replaces an unreadable
    video): ``predict`` reports the reason in the video's own result instead."""
    logger = logging.getLogger("momentlens.data.dataset")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _one(model: torch.nn.Module, dataset: MultiViewDataset, fast: InferencePath,
         sigmoid: bool = False) -> Scores:
    # A single video: no DataLoader, no progress bar, as fast as it gets.
    clips, label, idx = dataset[0]
    x = clips if clips.ndim == 5 else clips[None]
    with torch.inference_mode():
        logits = fast(model, Normalizer(model.input_spec)(x.to(fast.device)))
    probs = activate(logits, sigmoid).cpu().numpy()
    return Scores(indices=np.array([idx]), labels=np.array([label]), clip_probs=probs[None])


MULTI_LABEL_NOTE = ("multi-label model: each probability is its class's own sigmoid; "
                    "they do not sum to one")


def format_predictions(results: list[dict[str, Any]], as_json: bool = False) -> str:
    if as_json:
        return json.dumps(results, indent=2)
    lines = [MULTI_LABEL_NOTE] if any(r.get("multi_label") for r in results) else []
    for r in results:
        if "error" in r:
            lines.append(f"{r['video']}: error: {r['error']}")
        else:
            tops = " ".join(f"{n}: {t['class']} ({t['prob']:.3f})"
                            for n, t in enumerate(r["top"], start=1))
            lines.append(f"{r['video']}\n  {tops}")
            if "scored" in r:
                lines.append(f"  {r['scored']['text']}")
            lines += [f"  warning: {w}" for w in r.get("warnings", [])]
    return "\n".join(lines)


__all__ = ["predict", "predict_loaded", "gather_shares", "collect_videos", "format_predictions", "MULTI_LABEL_NOTE"]
