"""``momentlens predict VIDEO --timeline`` on a 60-second video made of synthetic clips of
three classes: its CSV names the right class in every window that lies inside one
class's stretch, and changes class only at the stretch boundaries."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from conftest import cm
from momentlens.cli import main
from momentlens.data.encode import write_video

ORDER = ["ring", "triangle", "falling", "triangle", "ring", "falling"]  # 10 s each
FPS = 10


@pytest.fixture(scope="module")
def minute(tmp_path_factory: pytest.TempPathFactory):
    frames = np.concatenate([cm.clip_frames(c, 10 * i + j, 2.5, FPS)
                             for i, c in enumerate(ORDER) for j in range(4)])
    path = tmp_path_factory.mktemp("timeline") / "minute.mp4"
    write_video(path, frames, fps=FPS)
    return path


@pytest.mark.parametrize("model", ["colour2d", "colour3d"])
def test_timeline_csv_follows_the_class_changes(runs, minute, tmp_path, capsys, model) -> None:
    cm.register()
    run = runs["2d" if model == "colour2d" else "3d"]
    out = tmp_path / "out"
    assert main(["predict", str(run), str(minute), "--timeline", "--window-s", "3",
                 "--stride-s", "1", "--out", str(out), "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    assert result["timeline"]["windows"] == 58
    assert (out / "minute.timeline.png").stat().st_size > 5000
    with open(out / "minute.timeline.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 58 and list(rows[0])[4:] == cm.CLASSES
    for r in rows:
        start, end = float(r["start_s"]), float(r["end_s"])
        probs = [float(r[c]) for c in cm.CLASSES]
        assert abs(sum(probs) - 1) < 1e-3 and r["top1"] == cm.CLASSES[int(np.argmax(probs))]
        if int(start // 10) == int((end - 1e-6) // 10):  # inside one class's 10 s
            assert r["top1"] == ORDER[int(start // 10)], r
    changes = [float(b["start_s"]) for a, b in zip(rows, rows[1:]) if a["top1"] != b["top1"]]
    assert len(changes) == 5  # one change per boundary, no flicker
    for t, boundary in zip(changes, (10, 20, 30, 40, 50)):
        assert boundary - 3 < t <= boundary, changes  # a window that straddles it


def test_bad_window_is_a_one_line_error(runs, minute, tmp_path, capsys) -> None:
    cm.register()
    assert main(["predict", str(runs["2d"]), str(minute), "--timeline", "--window-s", "0",
                 "--out", str(tmp_path)]) == 2
    assert "--window-s and --stride-s must be positive" in capsys.readouterr().err
