"""``momentlens export RUN --format onnx``: write the file, check it against eager fp32."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from momentlens.utils import MomentlensError, write_json_atomic

#: A file whose logits differ from eager fp32 by more than this fraction of their scale
#: (the largest absolute logit) fails the check.
PARITY_TOLERANCE = 1e-4


def default_out(model: str) -> Path:
    """``RUN/model.onnx`` for a folder, ``FILE.onnx`` beside a model file."""
    from momentlens.engine.export import ONNX_FILE

    path = Path(model)
    return path / ONNX_FILE if path.is_dir() else path.with_suffix(".onnx")


def run(args: argparse.Namespace) -> int:
    """Export, then (with data: ``--data`` or the run's own) print and write the parity.
    Exit status 1 when parity fails."""
    from momentlens.engine import export as X
    from momentlens.engine.checkpoint import load_model

    if args.format != "onnx":
        raise MomentlensError(f"unknown format {args.format!r}; allowed: onnx")
    X.require("onnx"), X.require("onnxruntime")  # before any work: the install hint
    model, meta = load_model(args.model, "cpu")
    out = Path(args.out) if args.out else default_out(args.model)
    X.export_onnx(model, meta, out)
    print(f"wrote {out} (dynamic batch; input record and {len(meta['classes'])} class names "
          "in its metadata)")
    data = Path(args.data) if args.data else X.run_data(args.model)
    if data is None:
        print("parity not checked: no --data given and the run's dataset is not found",
              file=sys.stderr)
        return 0
    onnx_model, _ = X.load_onnx(out)
    clips = X.parity_clips(model.input_spec, data, split=args.split, count=args.clips)
    result = X.parity(model, onnx_model, clips)
    result.update(data=str(data), split=args.split, tolerance=PARITY_TOLERANCE,
                  passed=result["relative_diff"] <= PARITY_TOLERANCE
                  and result["top1_agreement"] == 1.0)
    write_json_atomic(out.with_suffix(".parity.json"), result)
    print(f"parity vs eager fp32 on {result['clips']} clips of {data} ({args.split}): "
          f"max |logit diff| {result['max_abs_logit_diff']:.2e} "
          f"({result['relative_diff']:.1e} of the logit scale {result['logit_scale']:.3g}), "
          f"top-1 agreement {100 * result['top1_agreement']:.1f}%"
          f" -> {'ok' if result['passed'] else 'FAILED'}")
    return 0 if result["passed"] else 1
