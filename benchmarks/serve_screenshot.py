"""The screenshot of docs/serve.md: both demo models on a time-reversed-pair video where
the 2D and the 3D column disagree (the paper's finding, on one page).

    .venv/bin/python benchmarks/serve_screenshot.py \
        [--runs demo_out/runs/2d demo_out/runs/3d] [--data demo_out/data] [--out docs/serve.png]

Picks the first validation video of a time-reversed pair class that the 3D run gets right
and the 2D run gets wrong, starts `momentlens serve` on a free loopback port, uploads the
video through the page in headless Chromium (the system one, via Playwright) and saves a
full-page screenshot. Needs `momentlens[serve,servetest]` and `chromium` on PATH.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def pick_video(runs: list[str], data: Path) -> tuple[Path, list[str]]:
    import momentlens
    from momentlens.data.synth import TIME_REVERSED_PAIRS

    pair_classes = [c for pair in TIME_REVERSED_PAIRS for c in pair]
    clf2d, clf3d = (momentlens.load(r) for r in runs)
    for cls in pair_classes:
        for video in sorted((data / "validation" / cls).glob("*.mp4")):
            top2d, top3d = clf2d.predict(video, 1)[0][0], clf3d.predict(video, 1)[0][0]
            if top3d == cls and top2d != cls:
                return video, [top2d, top3d]
    raise SystemExit("no pair-class validation video where 3D is right and 2D wrong")


def serve(runs: list[str]) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "momentlens", "serve", *runs,
                             "--port", str(port), "--log-level", "warning"])
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("serve did not start")


def screenshot(url: str, video: Path, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as pw, __import__("tempfile").TemporaryDirectory() as profile:
        browser = pw.chromium.launch_persistent_context(
            profile, executable_path=exe, headless=True, args=["--no-sandbox"],
            viewport={"width": 940, "height": 1000})
        page = browser.new_page()
        page.goto(url + "/")
        page.set_input_files("#file", str(video))
        page.wait_for_selector("body[data-state=done]", timeout=120_000)
        page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth)")
        page.screenshot(path=str(out), full_page=True)
        browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs=2, default=["demo_out/runs/2d", "demo_out/runs/3d"])
    ap.add_argument("--data", type=Path, default=Path("demo_out/data"))
    ap.add_argument("--out", type=Path, default=Path("docs/serve.png"))
    args = ap.parse_args()
    video, tops = pick_video(args.runs, args.data)
    print(json.dumps({"video": str(video), "top1_2d": tops[0], "top1_3d": tops[1]}))
    proc, url = serve(args.runs)
    try:
        screenshot(url, video, args.out)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
