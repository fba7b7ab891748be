"""Time and memory of `momentlens demo`, and its targets (issues 7 and 8).

Runs the demo as a child process, samples the resident memory of the whole process tree
(the demo, its DataLoader workers and generator processes) every 0.2 s, and prints a
markdown block for docs/benchmarks.md with the demo's own numbers from summary.json:

    python benchmarks/bench_demo.py --out demo_bench [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

TARGETS = [
    # (what, group, model, key, comparison, bound)
    ("3D top-1 on the time-reversed pairs", "3d", ("pairs", "top1"), ">=", 0.9),
    ("2D top-1 on the time-reversed pairs", "2d", ("pairs", "top1"), "<=", 0.65),
    ("2D top-1 on the appearance classes", "2d", ("appearance", "top1"), ">=", 0.9),
    ("3D top-1 on the appearance classes", "3d", ("appearance", "top1"), ">=", 0.9),
    ("3D CAM pointing game (validation)", "3d", ("cam_pointing",), ">=", 0.9),
]


def _children(pid: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {pid}, [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return tree


def _rss_mb(pids: set[int]) -> float:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/statm") as fh:
                total += int(fh.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def _get(groups: dict, model: str, path: tuple[str, ...]) -> float | None:
    value = groups[model]
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="demo_bench")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--keep", action="store_true", help="reuse an existing output folder")
    ap.add_argument("--device", default="cpu", help="cpu (default: the README's figure), "
                    "cuda or auto")
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists() and not args.keep:
        shutil.rmtree(out)
    cmd = [sys.executable, "-m", "momentlens", "demo", "--out", str(out), "--device", args.device]
    if args.quick:
        cmd.append("--quick")
    env = {**os.environ, "MOMENTLENS_QUIET": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, _rss_mb(_children(proc.pid)))
        time.sleep(0.2)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"demo failed with exit code {proc.returncode}", file=sys.stderr)
        return proc.returncode
    summary = json.loads((out / "summary.json").read_text())
    groups = summary["groups"]
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"\n### `momentlens demo{' --quick' if args.quick else ''}`\n")
    device = summary.get("device", args.device)
    gpu = ""
    if str(device).startswith("cuda"):
        import torch

        gpu = f" ({torch.cuda.get_device_name()})"
    print(f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"device {device}{gpu}.\n")
    print(f"- wall time: {seconds / 60:.1f} min ({seconds:.0f} s)")
    print(f"- peak resident memory of the process tree: {peak / 1024:.2f} GB\n")
    print("| target | measured | bound | met |")
    print("|---|---|---|---|")
    for what, model, path, op, bound in TARGETS:
        value = _get(groups, model, path)
        met = value is not None and (value >= bound if op == ">=" else value <= bound)
        shown = "n/a" if value is None else f"{value:.3f}"
        print(f"| {what} | {shown} | {op} {bound} | {'yes' if met else 'NO'} |")
    p2 = _get(groups, "2d", ("cam_pointing",))
    print(f"| 2D CAM pointing game (validation) | {'n/a' if p2 is None else f'{p2:.3f}'} "
          f"| reported | - |")
    print(f"\nFinding holds: {summary['finding_holds']}. {summary['finding']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
