"""Issue 21: a newcomer's first hour, every message checked, and the report of a run with
no confusions in Chromium (item 7 of the issue: no empty plots)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from momentlens.analysis.compare import compare_evaluations
from momentlens.analysis.evalio import write_evaluation
from momentlens.cli import main
from momentlens.data import synth

CLASSES = ["ring", "square", "falling", "rising"]


def test_the_first_hour(tmp_path, write_model_file, capsys, monkeypatch, media):
    monkeypatch.setenv("MOMENTLENS_CACHE_DIR", str(tmp_path / "cache"))
    run = write_model_file(tmp_path / "run", CLASSES, 0, model="r3d10", frames=8, size=32,
                           width=0.125, stride=2)
    clips = tmp_path / "my_clips"
    clips.mkdir()
    media.write_with(clips / "holiday.mp4", "libx264", "mp4", media.frames(400, 48, 64), fps=25)
    media.write_with(clips / "phone.webm", "libvpx-vp9", "webm", media.frames(20, 64, 32), fps=30)
    # 1. check a plain folder of clips
    assert main(["check", str(clips), "--workers", "1", "--min-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "checked 2 videos" in out and "no dataset layout here" in out
    assert "no problems found" in out
    # 2. predict a long video: several clips, and it says so
    assert main(["predict", str(run), str(clips / "holiday.mp4")]) == 0
    out = capsys.readouterr().out
    assert "1: " in out and "scored 10 clips of 0.6 s spread over 16.0 s" in out
    # 3. cam: the run is loaded first, then the video mapped, then every file named
    assert main(["cam", str(run), str(clips / "holiday.mp4"), "--out", str(tmp_path / "cam")]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("momentlens cam: mapping")
    assert "top-5:" in captured.out and "wrote" in captured.out
    assert Image.open(tmp_path / "cam" / "contact_sheet.png").width < 2000  # rows wrap
    # 4. evaluate with CAMs, then report: the CAM gallery comes with it
    data = tmp_path / "ds"
    synth.generate(data, train_per_class=1, val_per_class=1, size=32, num_frames=20, seed=2,
                   workers=1, classes=CLASSES)
    assert main(["evaluate", str(run), "--data", str(data), "--out", str(tmp_path / "ev"),
                 "--cam", "--workers", "0"]) == 0
    assert "CAM localisation" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "ev"), "--out", str(tmp_path / "r.html")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert 'class="cam-gallery"' in (tmp_path / "r.html").read_text()
    # 5. models --json | head, through a real shell pipe: no traceback
    pipe = subprocess.run(f"{sys.executable} -m momentlens models --json | head -n 3",
                          shell=True, capture_output=True, text=True, timeout=120)
    assert pipe.stdout.startswith("[") and "Traceback" not in pipe.stderr


def _perfect(out: Path, name: str) -> Path:
    """An evaluation folder in which every video is right (no confusions)."""
    labels = np.repeat(np.arange(len(CLASSES)), 3)
    probs = np.full((len(labels), len(CLASSES)), 0.02)
    probs[np.arange(len(labels)), labels] = 0.94
    write_evaluation(out, video_probs=probs, labels=labels,
                     paths=[f"validation/{CLASSES[c]}/{i}.mp4" for i, c in enumerate(labels)],
                     class_names=CLASSES, meta={"model": name, "split": "validation"})
    return out


@pytest.mark.browser
def test_a_clean_report_has_no_empty_plot(tmp_path, render_in_chromium):
    a, b = _perfect(tmp_path / "a", "2D"), _perfect(tmp_path / "b", "3D")
    compare_evaluations(a, b, tmp_path / "cmp")
    page = tmp_path / "report.html"
    assert main(["report", str(a), str(b), "--out", str(page)]) == 0
    dom = render_in_chromium(page)
    for empty in ("confusion heat map", "top-5 histogram", "top5_hists", "differences"):
        assert f": {empty}\"" not in dom, empty  # no <img> for a plot with nothing to show
    assert "per-class accuracy" in dom  # the plots that show something stay
    assert dom.count("No confusions: every scored video") == 2
    assert "would be a single bar" in dom and "no per-class differences to plot" in dom
    shot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                        f"--user-data-dir={profile}", f"--screenshot={shot}",
                        "--window-size=1200,2400", page.resolve().as_uri()],
                       capture_output=True, timeout=90, check=True)
    assert Image.open(shot).size == (1200, 2400)


def _chromium() -> str:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser") or "chromium"
