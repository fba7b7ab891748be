"""check / prepare / stats on a small set with broken files; prepare killed and resumed."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from momentlens.cli import main
from momentlens.data.check import check_dataset, dataset_stats
from momentlens.data.decode import open_video
from momentlens.data.layout import load_split
from momentlens.data.prepare import QUARANTINE_FILE, REPORT_FILE, SETTINGS_FILE, prepare_dataset

BROKEN = ("zero", "truncated", "text", "audio", "one_frame", "odd")


@pytest.fixture
def broken_root(tmp_path, vids):
    root = vids.write_mit(tmp_path / "mit", classes=("jumping", "running"), per_class=2, n=20,
                          splits=("training",))
    files = vids.write_broken_set(root / "training" / "running")
    csv = root / "trainingSet.csv"
    rows = [f"running/{files[k].name},running,3,0\n" for k in BROKEN]
    csv.write_text(csv.read_text() + "".join(rows) + "running/ghost.mp4,running,3,0\n"
                   "jumping/trn_0.mp4,dancing,3,0\n")
    return root


def test_check_reports_each_broken_file(broken_root, tmp_path, capsys):
    report = check_dataset(broken_root, workers=2)
    by_name = {os.path.basename(v["path"]): v["problems"] for v in report["videos"]}
    assert by_name["zero.mp4"] == ["unreadable"]
    assert by_name["truncated.mp4"] == ["unreadable"]
    assert by_name["text.mp4"] == ["unreadable"]
    assert by_name["audio.mp4"] == ["unreadable"]
    assert by_name["one_frame.mp4"] == ["too_short", "small_size"]  # 1 frame, 32 px
    assert by_name["odd.mp4"] == ["too_short", "small_size"]
    assert by_name["tra_0.mp4"] == ["small_size"]  # good but 32 px < the 112 crop
    clean = check_dataset(broken_root, workers=1, min_size=32)
    assert "tra_0.mp4" not in {os.path.basename(v["path"]) for v in clean["videos"]}
    kinds = {p["kind"] for p in report["label_problems"]}
    assert kinds == {"missing", "unknown_label"}
    assert any("trainingSet.csv:11" in p["where"] for p in report["label_problems"])
    assert not report["ok"]
    out = tmp_path / "report.json"
    assert main(["check", str(broken_root), "--workers", "1", "--json", str(out)]) == 1
    text = capsys.readouterr().out
    assert "unreadable 4" in text and "audio.mp4: " in text and "no video stream" in text
    assert json.loads(out.read_text())["counts"]["unreadable"] == 4


def test_check_clean_dataset_exits_zero(tmp_path, vids):
    root = vids.write_mit(tmp_path / "ok", per_class=1, n=16)
    assert main(["check", str(root), "--workers", "1", "--min-size", "32"]) == 0


def test_stats_values(tmp_path, vids, capsys):
    root = tmp_path / "flat"
    frames = np.zeros((8, 32, 32, 3), np.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 200, 100, 50
    from momentlens.data.encode import write_video

    for i in range(3):
        write_video(root / "training" / "c" / f"{i}.mp4", frames, crf=10)
    stats = dataset_stats(root, max_videos=2, frames_per_video=4, workers=1)
    assert stats["videos"] == 2
    assert stats["mean_255"] == pytest.approx([200, 100, 50], abs=3)
    assert max(stats["std_255"]) < 3
    assert stats["mean_01"][0] == pytest.approx(200 / 255, abs=0.01)
    out = tmp_path / "stats.json"
    assert main(["stats", str(root), "--json", str(out), "--workers", "1"]) == 0
    assert "mean on [0,255]" in capsys.readouterr().out
    assert json.loads(out.read_text())["pixels"] == 3 * 8 * 32 * 32


def _assert_valid_copy(src, out, expect_failed, expect_missing=frozenset()):
    report = json.loads((out / REPORT_FILE).read_text())
    assert {os.path.basename(f["path"]) for f in report["failures"]} == expect_failed
    assert {os.path.basename(f["path"]) for f in report["missing"]} == expect_missing
    # The copy's list keeps every other row byte for byte, in order.
    gone = expect_failed | expect_missing
    rows = (src / "trainingSet.csv").read_bytes().splitlines(keepends=True)
    kept = [r for r in rows if os.path.basename(r.split(b",")[0].decode()) not in gone]
    assert (out / "trainingSet.csv").read_bytes() == b"".join(kept)
    quarantine = out / QUARANTINE_FILE
    if gone:
        entries = [json.loads(line) for line in quarantine.read_text().splitlines()]
        assert {os.path.basename(e["path"]) for e in entries} == gone
        assert all(e["error"] and e["listed_in"] for e in entries)
    else:
        assert not quarantine.exists() and report["quarantine_file"] is None
    assert (out / "moments_categories.txt").is_file()
    leftovers = [p for p in out.rglob(".*") if p != out / SETTINGS_FILE]  # no temporaries
    assert leftovers == [] and (out / SETTINGS_FILE).is_file()


def test_prepare_video_mode_with_broken_files(broken_root, tmp_path):
    out = tmp_path / "fast"
    summary = prepare_dataset(broken_root, out, short_side=24, workers=2)
    assert (summary["videos"], summary["failed"], summary["done"]) == (12, 4, 8)
    _assert_valid_copy(broken_root, out, {"zero.mp4", "truncated.mp4", "text.mp4", "audio.mp4"},
                       {"ghost.mp4"})
    with open_video(out / "training" / "running" / "odd.mp4") as r:
        assert r.num_frames == 8 and r.size == (24, 44)  # 97x173 -> short side 24, 42.8 rounded to even
    with open_video(out / "training" / "jumping" / "tra_1.mp4") as r:
        assert r.num_frames == 20 and r.size == (24, 24)
    again = prepare_dataset(broken_root, out, short_side=24, workers=1)
    assert (again["done"], again["skipped"], again["failed"]) == (0, 8, 4)


def test_prepare_frames_mode_loads_through_layout(tmp_path, vids):
    src = vids.write_mit(tmp_path / "mit", classes=("a", "b"), per_class=1, n=10)
    out = tmp_path / "frames"
    assert main(["prepare", str(src), str(out), "--mode", "frames", "--workers", "1"]) == 0
    split = load_split(out, "validation")
    assert all(r.path.is_dir() for r in split.records)
    with open_video(split.records[1].path) as r:
        assert r.num_frames == 10 and r.size == (32, 32)
        assert vids.frame_id(r.get_frames([7])[0]) == 7


def _finals(out):
    return [p for p in out.rglob("*.mp4") if not p.name.startswith(".")]


def test_prepare_killed_then_resumed(tmp_path, vids):
    src = vids.write_mit(tmp_path / "mit", classes=("a", "b", "c"), per_class=4, n=30,
                         splits=("training",))
    out = tmp_path / "fast"
    cmd = [sys.executable, "-m", "momentlens", "prepare", str(src), str(out),
           "--workers", "1", "--short-side", "24", "--crf", "30"]
    env = {**os.environ, "MOMENTLENS_QUIET": "1"}
    # The 12 copies come about 8 ms apart: a garbage collection of this (pytest's big)
    # process inside the polling loop could miss the whole window (seen after an
    # unrelated test module grew), so none runs while it polls.
    gc.collect()
    gc.disable()
    try:
        proc = subprocess.Popen(cmd, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if len(_finals(out)) >= 2:
                break
            time.sleep(0.002)
        assert proc.poll() is None, "prepare finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: the CLI and its worker
    finally:
        gc.enable()
    proc.wait()
    written = len(_finals(out))
    assert 2 <= written < 12 and not (out / REPORT_FILE).exists()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads((out / REPORT_FILE).read_text())
    assert summary["skipped"] >= 2 and summary["done"] + summary["skipped"] == 12
    _assert_valid_copy(src, out, set())
    for rec in load_split(out, "training").records:
        with open_video(rec.path) as r:
            assert r.num_frames == 30
            assert vids.frame_id(r.get_frames([29])[0]) == 29


def test_check_warns_about_classes_without_videos(tmp_path, vids, capsys):
    # "empty": no rows in training; "broken": training rows that are all unreadable;
    # "rare": no validation rows. All videos are listed up front, unreadable ones first.
    root = vids.write_mit(tmp_path / "mit", classes=("ok", "broken", "rare", "empty"),
                          per_class=1, n=16)
    train_csv, val_csv = root / "trainingSet.csv", root / "validationSet.csv"
    train_csv.write_text("".join(line + "\n" for line in train_csv.read_text().splitlines()
                                 if not line.startswith("empty/")))
    val_csv.write_text("".join(line + "\n" for line in val_csv.read_text().splitlines()
                               if not line.startswith("rare/")))
    (root / "training" / "broken" / "tra_0.mp4").write_text("not a video\n")
    (root / "training" / "broken" / "tra_1.mp4").write_bytes(b"")
    train_csv.write_text(train_csv.read_text() + "broken/tra_1.mp4,broken,3,0\n")
    report = check_dataset(root, workers=1, min_size=32)
    warnings = {(w["split"], w["class"]): w for w in report["warnings"]}
    assert set(warnings) == {("training", "empty"), ("training", "broken"),
                             ("validation", "rare")}
    assert warnings[("training", "empty")]["kind"] == "class_without_training_videos"
    assert warnings[("training", "broken")]["message"] == (
        "class 'broken' has no training videos (2 listed, none readable)")
    assert warnings[("validation", "rare")]["message"] == (
        "class 'rare' has no validation videos (none listed)")
    assert [v["problems"] for v in report["videos"]] == [["unreadable"], ["unreadable"]]
    out = tmp_path / "report.json"
    assert main(["check", str(root), "--workers", "1", "--min-size", "32",
                 "--json", str(out)]) == 1
    text = capsys.readouterr().out
    assert "warning: class 'empty' has no training videos (none listed)" in text
    assert "warning: class 'rare' has no validation videos (none listed)" in text
    assert len(json.loads(out.read_text())["warnings"]) == 3
    # Only the checked splits are judged: no validation split, no validation warning.
    only_train = check_dataset(root, ["training"], workers=1, min_size=32)
    assert {w["split"] for w in only_train["warnings"]} == {"training"}


def test_check_lists_every_unreadable_video(tmp_path, vids):
    root = vids.write_mit(tmp_path / "mit", classes=("a",), per_class=30, n=16,
                          splits=("training",))
    for k in range(0, 30, 2):  # 15 unreadable files among 30
        (root / "training" / "a" / f"tra_{k}.mp4").write_bytes(b"junk")
    report = check_dataset(root, workers=2, min_size=32)
    assert report["probed"] == 30 and report["counts"] == {"unreadable": 15}
    assert sorted(os.path.basename(v["path"]) for v in report["videos"]) == sorted(
        f"tra_{k}.mp4" for k in range(0, 30, 2))
