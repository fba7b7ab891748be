"""ONNX export of a trained model, usable alone, and its parity with eager fp32.

An exported file holds the graph with a dynamic batch axis (input ``clips``: normalised
float ``(B, 3, T, H, W)``; output ``logits``: ``(B, K)``) and, in its ``metadata_props``,
the JSON record under the key ``momentlens``: the model name and options, the class
names in output order and the typed input record
(:class:`~momentlens.models.spec.InputSpec`: sampler, frames, stride, size, resize,
normalisation preset with its mean and std). Every other key is a readable copy
(``classes``, ``input``).

``onnx`` and ``onnxruntime`` are an optional extra (``pip install 'momentlens[onnx]'``),
imported only here and only when asked for. An ONNX file is a protobuf graph of standard
operators, not a pickle: reading it runs no code of the file's author.
"""

from __future__ import annotations

import importlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from momentlens.models.spec import InputSpec
from momentlens.utils import MomentlensError, atomic_path

ONNX_FILE = "model.onnx"  # where `export RUN` writes by default, and where a run folder's is looked for
META_KEY = "momentlens"
INSTALL_HINT = "pip install 'momentlens[onnx]'"
OPSET = 17


def require(module: str) -> Any:
    """``import module`` (``onnx`` or ``onnxruntime``), or one line saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MomentlensError(f"{module} is not installed; install the extra: "
                              f"{INSTALL_HINT}") from None


def export_onnx(model: nn.Module, meta: dict[str, Any], out: str | os.PathLike[str],
                opset: int = OPSET) -> Path:
    """Write ``model`` (eval mode, fp32) to ``out`` with the record of the module doc."""
    onnx = require("onnx")
    spec: InputSpec = model.input_spec
    model = model.to("cpu", memory_format=torch.contiguous_format).float().eval()
    example = torch.zeros(spec.shape(batch=2))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"model": meta.get("model"), "options": meta.get("options", {}),
              "num_classes": len(meta["classes"]), "classes": list(meta["classes"]),
              "input": spec.to_dict(), "epoch": meta.get("epoch"),
              **({"multi_label": True} if meta.get("multi_label") else {})}  # sigmoid scores
    with atomic_path(out) as tmp, warnings.catch_warnings():
        # The tracer notes the models' shape checks; they hold for every batch size.
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(tmp), input_names=["clips"],
                          output_names=["logits"], opset_version=opset, dynamo=False,
                          dynamic_axes={"clips": {0: "batch"}, "logits": {0: "batch"}})
        proto = onnx.load(str(tmp))
        for key, value in ((META_KEY, record), ("classes", record["classes"]),
                           ("input", record["input"])):
            prop = proto.metadata_props.add()
            prop.key, prop.value = key, json.dumps(value, sort_keys=True)
        onnx.save(proto, str(tmp))
    return out


def resolve_onnx(path: str | os.PathLike[str]) -> Path:
    """An ``.onnx`` file, or the ``model.onnx`` of a run folder."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / ONNX_FILE).is_file():
        return path / ONNX_FILE
    raise MomentlensError(f"{path} is neither an .onnx file nor a folder holding {ONNX_FILE} "
                          f"(write one with `momentlens export {path} --format onnx`)")


class OnnxModel(nn.Module):
    """An exported file on ONNX Runtime's CPU provider, called like the model it came from:
    normalised float ``(B, 3, T, H, W)`` -> float32 logits ``(B, K)`` on the CPU."""

    conv_dims = 0  # no weights here to put in a memory layout

    def __init__(self, session: Any, spec: InputSpec, num_classes: int) -> None:
        super().__init__()
        self.session = session
        self.input_spec = spec
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clips = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return torch.from_numpy(self.session.run(None, {"clips": clips})[0])


def load_onnx(path: str | os.PathLike[str], threads: int = 0) -> tuple[OnnxModel, dict[str, Any]]:
    """``(model, meta)`` of an exported file (or a run folder's ``model.onnx``); ``meta`` as
    :func:`~momentlens.engine.checkpoint.load_model` returns it, plus ``backend``."""
    ort = require("onnxruntime")
    file = resolve_onnx(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        meta = json.loads(session.get_modelmeta().custom_metadata_map[META_KEY])
    except KeyError:
        raise MomentlensError(f"{file} has no momentlens record; export it with "
                              "`momentlens export`") from None
    except Exception as exc:  # noqa: BLE001 - ORT raises its own types for a bad file
        raise MomentlensError(f"{file} is not a readable ONNX model: {exc}") from None
    meta.update(path=str(file), backend="onnxruntime")
    spec = InputSpec.from_dict(meta["input"], str(file))
    return OnnxModel(session, spec, len(meta["classes"])), meta


# ----------------------------------------------------------------------------- parity


def run_data(run: str | os.PathLike[str]) -> Path | None:
    """The dataset a run was trained on (its ``config.yaml``'s ``data``), if it still exists."""
    import yaml

    root = Path(run)
    for config in (root / "config.yaml", root.parent.parent.parent / "config.yaml"):
        if config.is_file():
            data = (yaml.safe_load(config.read_text()) or {}).get("data")
            return Path(data) if data and Path(data).is_dir() else None
    return None


def parity_clips(spec: InputSpec, data: str | os.PathLike[str], split: str = "validation",
                 count: int = 16) -> torch.Tensor:
    """``count`` real clips of ``data``/``split`` (spread over the list, so over the classes),
    decoded and normalised as evaluation does: float ``(N, 3, T, H, W)``."""
    from momentlens.data.dataset import VideoDataset
    from momentlens.data.layout import load_split

    records = load_split(data, split).records
    if not records:
        raise MomentlensError(f"{data} has no {split} videos to check parity on")
    pick = np.unique(np.linspace(0, len(records) - 1, min(count, len(records))).round())
    dataset = VideoDataset([records[int(i)] for i in pick], train=False,
                           quarantine_path=os.devnull, **spec.dataset_options())
    clips = torch.stack([dataset[i][0] for i in range(len(dataset))])
    return spec.normalize(clips)


@torch.inference_mode()
def parity(reference: nn.Module, other: nn.Module, clips: torch.Tensor, batch: int = 4
           ) -> dict[str, Any]:
    """How closely ``other`` follows ``reference`` (eager fp32) on ``clips``: max abs logit
    difference, the logits' scale (max abs reference logit), their ratio, top-1 agreement."""
    ref = torch.cat([reference(clips[i:i + batch]).float() for i in range(0, len(clips), batch)])
    got = torch.cat([other(clips[i:i + batch]).float() for i in range(0, len(clips), batch)])
    diff = float((ref - got.to(ref.device)).abs().max())
    scale = float(ref.abs().max())
    agree = float((ref.argmax(1) == got.argmax(1).to(ref.device)).float().mean())
    return {"clips": len(clips), "max_abs_logit_diff": diff, "logit_scale": scale,
            "relative_diff": diff / scale if scale > 0 else diff, "top1_agreement": agree}
