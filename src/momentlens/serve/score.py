"""Scoring one uploaded video with every served run: top-k, CAM media, timeline.

Each run's top-k is :func:`momentlens.engine.predict.predict_loaded`'s, the values
``momentlens predict --json`` prints for the same file. The CAM of the top class
(:func:`momentlens.cam.video.video_cam`) is rendered as an animated GIF with the
evidence-over-time plot (:mod:`momentlens.cam.render`); a video longer than one
window gets a :mod:`~momentlens.engine.timeline`. Media files get random names in the
request's own folder; the caller turns them into URLs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from momentlens.engine.predictor import Classifier
from momentlens.serve.upload import UploadError
from momentlens.utils import MomentlensError


@dataclass(frozen=True)
class Settings:
    """What ``momentlens serve``'s flags set (see :func:`momentlens.serve.app.create_app`)."""

    max_upload_mb: float = 200.0
    max_seconds: float | None = 600.0
    workers: int = 1
    queue: int = 8
    topk: int = 5
    window_s: float = 3.0
    stride_s: float = 1.0
    media_ttl_s: float = 900.0
    max_media_dirs: int = 64

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * (1 << 20))


def describe_run(name: str, clf: Classifier) -> dict[str, Any]:
    """``GET /api/models`` entry: name, architecture, classes, input record."""
    return {"name": name, "model": clf.meta.get("model"), "classes": clf.classes,
            "input": clf.input_spec.to_dict(), "device": str(clf.device),
            "precision": clf.precision, "backend": clf.backend}


def _media_name(suffix: str) -> str:
    return secrets.token_urlsafe(12) + suffix


def _decode_errors() -> tuple[type[BaseException], ...]:
    import av

    return (MomentlensError, av.error.FFmpegError, ValueError, IndexError, EOFError, OSError)


def _cam_media(clf: Classifier, video: Path, folder: Path) -> dict[str, str] | None:
    """GIF of the top class's map over the video and the evidence plot, or ``None`` for
    a model without feature maps (ONNX)."""
    from momentlens.cam import render
    from momentlens.cam.video import video_cam

    if not hasattr(clf.model, "forward_features"):
        return None
    cam = video_cam(clf.model, clf.meta, video)
    gif, plot = _media_name(".gif"), _media_name(".png")
    (folder / gif).write_bytes(render.gif_bytes(render.overlay_frames(cam),
                                                render.playback_fps(cam)))
    (folder / plot).write_bytes(render.evidence_png([cam], title=f"evidence: {cam.class_name}"))
    return {"cam": gif, "evidence": plot}


def _timeline(clf: Classifier, video: Path, folder: Path, settings: Settings
              ) -> dict[str, Any]:
    from momentlens.engine.timeline import timeline, timeline_png

    tl = timeline(clf.model, clf.meta, clf.fast, video, settings.window_s, settings.stride_s)
    out = tl.to_dict(k=3)
    png = _media_name(".png")
    (folder / png).write_bytes(timeline_png(tl))
    out["plot"] = png
    return out


def score_run(name: str, clf: Classifier, video: Path, folder: Path, display: str,
              duration: float, settings: Settings) -> dict[str, Any]:
    """One run's column: ``{name, model, top, media: {cam, evidence, timeline}, timeline}``
    with media as file names inside ``folder``."""
    from momentlens.engine.predict import predict_loaded

    result = predict_loaded(clf.model, clf.meta, clf.fast, [video], topk=settings.topk)[0]
    if "top" not in result:
        raise UploadError(422, f"cannot decode video: {display}")
    entry: dict[str, Any] = {"name": name, "model": clf.meta.get("model"),
                             "top": result["top"], "media": {}, "timeline": None}
    entry["media"].update(_cam_media(clf, video, folder) or {})
    if duration > settings.window_s:
        entry["timeline"] = _timeline(clf, video, folder, settings)
        entry["media"]["timeline"] = entry["timeline"].pop("plot")
    return entry


def score_upload(runs: dict[str, Classifier], video: Path, folder: Path, display: str,
                 duration: float, settings: Settings) -> dict[str, Any]:
    """Every run on the uploaded ``video``; a video that cannot be decoded after all is
    an :class:`UploadError` 422 (never a server error)."""
    try:
        columns = [score_run(name, clf, video, folder, display, duration, settings)
                   for name, clf in runs.items()]
    except UploadError:
        raise
    except _decode_errors():
        raise UploadError(422, f"cannot decode video: {display}") from None
    return {"video": display, "duration_s": round(duration, 3), "runs": columns}
