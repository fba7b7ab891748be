"""``momentlens models``, ``compare`` and ``report``: tables and pages from what exists."""

from __future__ import annotations

import argparse
import json


def run_models(args: argparse.Namespace) -> int:
    """Every registered model with parameter count and GFLOPs, as a table or JSON."""
    from momentlens.commands import models_table

    rows = models_table.cached_costs(args.num_classes)  # computed once per code version
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(models_table.format_rows(rows))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """Compare two evaluation folders; write comparison.json and plots."""
    from momentlens.analysis import compare

    name_a, name_b = args.names or (None, None)
    comp = compare.compare_evaluations(args.eval_a, args.eval_b, args.out, name_a, name_b)
    print(compare.describe(comp))
    print(f"wrote {args.out}/{compare.COMPARISON_FILE} and plots")
    return 0


def run_report(args: argparse.Namespace) -> int:
    """One self-contained HTML page from evaluation folders."""
    from momentlens.analysis import report

    gallery = _cam_gallery(args.eval_dirs) if not getattr(args, "no_gallery", False) else ""
    report.write_report(args.eval_dirs, args.out, title=args.title,
                        num_examples=args.examples,
                        extra_sections=[("Class activation maps", gallery)] if gallery else None)
    return 0


def _cam_gallery(eval_dirs: list[str]) -> str:
    """The CAM gallery (right and wrong predictions with their maps, as in the demo's
    report) of each evaluation that scored CAMs (``evaluate --cam``), when the run and the
    data its metrics.json names are still there; otherwise a line on stderr says why not."""
    import sys
    from pathlib import Path

    from momentlens.analysis.evalio import read_evaluation
    from momentlens.cam.gallery import gallery_section
    from momentlens.engine.checkpoint import load_model
    from momentlens.engine.runtime import resolve_device

    parts = []
    for eval_dir in eval_dirs:
        m = read_evaluation(eval_dir).metrics
        if "cam" not in m:
            continue
        run, data = m.get("model_path"), m.get("data")
        if not (run and data and Path(run).exists() and Path(data).is_dir()):
            print(f"report: no CAM gallery for {eval_dir}: its run ({run}) or data ({data}) "
                  "is not there any more", file=sys.stderr)
            continue
        model, meta = load_model(run, resolve_device("auto"))
        label = f"{m.get('model') or 'model'} ({Path(eval_dir).name})"
        parts.append(gallery_section(model, meta, eval_dir, data, label=label,
                                     split=m.get("split") or "validation"))
    return "".join(parts)
