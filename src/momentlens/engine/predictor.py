"""``momentlens.load(path)``: a trained model as one object, for notebooks and scripts.

::

    clf = momentlens.load("runs/r3d18")        # run folder, checkpoint, model file or .onnx
    clf.classes                                # class names, in output order
    clf.predict("video.mp4", topk=5)           # [(class, probability), ...]
    clf.predict_many(["a.mp4", "b.mp4"])       # one such list per video, batched
    clf(clips)                                 # (B, 3, T, H, W) normalised float -> (B, K) logits
    clf.cam("video.mp4")                       # the arrays `momentlens cam` saves in cam.npz

Everything goes through the code the commands use (:func:`momentlens.engine.predict.
predict_loaded`, :func:`momentlens.cam.video.video_cams`), so ``predict`` returns exactly
what ``momentlens predict --json`` prints, and the same safety rules hold: model files
are read as safetensors (``weights_only`` for state files), ONNX files by ONNX Runtime.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from momentlens.engine.inference import InferencePath, load_for_inference
from momentlens.models.spec import InputSpec
from momentlens.utils import MomentlensError


class Classifier:
    """A loaded model with its class names, input record and inference path.

    ``model``: the ``torch.nn.Module`` (or an ONNX Runtime session wrapped as one);
    ``meta``: what :func:`~momentlens.engine.checkpoint.load_model` returns (``classes``,
    ``input``, ``model``, ``path``); ``fast``: how forward passes run (device, bf16 or
    fp32, memory layout: :func:`~momentlens.engine.inference.inference_path`).
    """

    def __init__(self, model: torch.nn.Module, meta: dict[str, Any], fast: InferencePath) -> None:
        self.model, self.meta, self.fast = model, meta, fast

    def __repr__(self) -> str:
        return (f"Classifier({self.meta.get('model')!r}, {len(self.classes)} classes, "
                f"{self.backend} on {self.device}, {self.precision}, path={self.meta.get('path')!r})")

    @property
    def classes(self) -> list[str]:
        """Class names in output order (index ``k`` of the logits)."""
        return list(self.meta["classes"])

    @property
    def input_spec(self) -> InputSpec:
        """What the model eats: sampler, frames, stride, size, resize, mean/std."""
        return self.model.input_spec

    @property
    def device(self) -> torch.device:
        return self.fast.device

    @property
    def precision(self) -> str:
        """``"bf16"`` (autocast) or ``"fp32"``."""
        return self.fast.precision

    @property
    def backend(self) -> str:
        return str(self.meta.get("backend", "torch"))

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        """Normalised float clips ``(B, 3, T, H, W)`` (``input_spec.normalize`` of uint8
        ones) -> float32 logits ``(B, K)``, on the fast path, as an inference tensor."""
        if clips.ndim != 5 or clips.shape[1] != 3:
            raise ValueError(f"expected clips (B, 3, T, H, W), got shape {tuple(clips.shape)}")
        return self.fast(self.model, clips.float())

    def predict(self, video: str | os.PathLike[str], topk: int = 5, clips: int | None = None
                ) -> list[tuple[str, float]]:
        """``[(class, probability), ...]`` of one video, best first: the values
        ``momentlens predict --json`` prints. ``clips``: clips scored per video; ``None``
        chooses as ``predict`` does (several evenly spread clips for a long video). An
        unreadable video raises :class:`~momentlens.utils.MomentlensError`."""
        return self._results([video], topk, clips, batch_size=1)[0]

    def predict_many(self, videos: Sequence[str | os.PathLike[str]], topk: int = 5,
                     clips: int | None = None, batch_size: int = 4, workers: int = 0
                     ) -> list[list[tuple[str, float]] | None]:
        """:meth:`predict` of each video, batched (``batch_size`` videos a forward pass,
        a progress bar on the terminal); ``None`` for a video that could not be read."""
        from momentlens.engine.predict import predict_loaded

        if not videos:
            return []
        results = predict_loaded(self.model, self.meta, self.fast, [Path(v) for v in videos],
                                 topk=topk, clips=clips, batch_size=batch_size, workers=workers)
        return [_pairs(r) if "top" in r else None for r in results]

    def _results(self, videos: Sequence[Any], topk: int, clips: int | None, batch_size: int
                 ) -> list[list[tuple[str, float]]]:
        from momentlens.engine.predict import predict_loaded

        for v in videos:
            if not Path(v).is_file():
                raise MomentlensError(f"{v} does not exist or is not a file")
        results = predict_loaded(self.model, self.meta, self.fast, [Path(v) for v in videos],
                                 topk=topk, clips=clips, batch_size=batch_size)
        bad = [r["video"] for r in results if "top" not in r]
        if bad:
            raise MomentlensError(f"cannot read {', '.join(bad)}")
        return [_pairs(r) for r in results]

    def cam(self, video: str | os.PathLike[str], class_name: str | int | None = None,
            frames: int | None = None, sliding: bool | None = None) -> dict[str, np.ndarray]:
        """The class activation map of one video, as the arrays ``momentlens cam`` saves in
        ``cam.npz``: ``heatmaps`` float32 ``(K, H, W)`` on the video's pixel grid (logit
        units), ``frame_indices`` ``(K,)``, ``class_index``, ``class_name``, ``probs``
        ``(num_classes,)``, ``evidence`` ``(K,)``; plus ``frames`` uint8 ``(K, H, W, 3)``.
        ``class_name``: default the top-1 class; ``frames``/``sliding``: as ``cam``'s flags.
        """
        from momentlens.cam.video import video_cam

        if not hasattr(self.model, "forward_features"):
            raise MomentlensError("cam needs the torch backend (an ONNX file has no feature maps)")
        m = video_cam(self.model, self.meta, video, class_name=class_name, frames=frames,
                      sliding=sliding)
        return {"heatmaps": m.heatmaps.astype(np.float32), "frame_indices": m.frame_indices,
                "class_index": np.int64(m.class_index), "class_name": np.str_(m.class_name),
                "probs": m.probs, "evidence": m.evidence, "frames": m.frames}


def _pairs(result: dict[str, Any]) -> list[tuple[str, float]]:
    return [(t["class"], t["prob"]) for t in result["top"]]


def load(path: str | os.PathLike[str], device: str = "auto", precision: str = "auto",
         backend: str = "auto") -> Classifier:
    """A trained model, ready to classify videos (module doc).

    path:      a run folder (its best checkpoint), a checkpoint folder, a
               ``model.safetensors`` file, or an exported ``.onnx`` file.
    device:    ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    precision: ``auto`` (bf16 autocast where the device has native bf16, else fp32),
               ``fp32`` or ``bf16``; see :func:`~momentlens.engine.inference.inference_path`.
    backend:   ``auto`` (ONNX Runtime for ``.onnx``, else torch), ``torch`` or
               ``onnxruntime`` (a run folder's exported ``model.onnx``).
    """
    return Classifier(*load_for_inference(path, device, precision, backend))
