"""``momentlens models``, ``compare`` and ``report``: tables and pages from what exists."""

from __future__ import annotations

import argparse
import json


def run_models(args: argparse.Namespace) -> int:
    """Every registered model with parameter count and GFLOPs, as a table or JSON."""
    from momentlens.models import flops

    costs = flops.all_costs(args.num_classes)
    if args.json:
        print(json.dumps([c.as_dict() for c in costs], indent=2))
    else:
        print(flops.format_table(costs))
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

    report.write_report(args.eval_dirs, args.out, title=args.title,
                        num_examples=args.examples)
    return 0
