"""prepare keeps a dataset trainable (broken videos left out of the copy's lists, listed
in its quarantine file), and a full disk ends prepare with one line, leaves no partial
file, and a rerun resumes once space is back (issue 15, points 4 and 5)."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest

from momentlens.cli import main
from momentlens.data.decode import open_video
from momentlens.data.encode import write_video
from momentlens.data.layout import load_split
from momentlens.data.prepare import QUARANTINE_FILE, REPORT_FILE, SETTINGS_FILE, prepare_dataset
from momentlens.utils import MomentlensError

TINY_TRAIN = ["--set", "model=r3d10", "--set", "width=0.0625", "--frames", "4", "--size", "32",
              "--epochs", "1", "--batch-size", "4", "--workers", "0", "--device", "cpu"]


def _add_broken(root, split, cls):
    """A truncated mp4, a text file named .mp4 and an empty file, appended to the list."""
    folder = root / split / cls
    good = (folder / f"{split[:3]}_0.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(good[: len(good) // 3])
    (folder / "notes.mp4").write_text("this is a text file, not a video\n")
    (folder / "empty.mp4").write_bytes(b"")
    rows = "".join(f"{cls}/{name},{cls},3,0\n" for name in ("truncated.mp4", "notes.mp4",
                                                            "empty.mp4"))
    csv = root / f"{split}Set.csv"
    csv.write_text(csv.read_text() + rows)


@pytest.fixture
def broken_mit(tmp_path, vids):
    root = vids.write_mit(tmp_path / "src", classes=("jumping", "running"), per_class=4, n=12)
    _add_broken(root, "training", "running")
    _add_broken(root, "validation", "jumping")
    return root


def _assert_every_listed_video_decodes(root):
    for split in ("training", "validation"):
        for rec in load_split(root, split).records:
            with open_video(rec.path) as reader:
                assert reader.get_frames(np.arange(reader.num_frames)).shape[0] == 12


def test_prepared_copy_lists_only_written_videos_and_trains(broken_mit, tmp_path, monkeypatch,
                                                            capsys):
    monkeypatch.setenv("MOMENTLENS_QUIET", "1")
    # The source trains: its broken videos are quarantined by the loader.
    assert main(["train", "--data", str(broken_mit), "--out", str(tmp_path / "run_src"),
                 *TINY_TRAIN]) == 0
    out = tmp_path / "copy"
    assert main(["prepare", str(broken_mit), str(out), "--workers", "1",
                 "--short-side", "32"]) == 1  # some videos failed: status 1, copy complete
    printed = capsys.readouterr().out
    assert "6 failed" in printed and QUARANTINE_FILE in printed
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["rows_dropped"] == {"trainingSet.csv": 3, "validationSet.csv": 3}
    entries = [json.loads(line) for line in (out / QUARANTINE_FILE).read_text().splitlines()]
    assert sorted(e["path"] for e in entries) == sorted(f["path"] for f in report["failures"])
    assert {e["path"] for e in entries} == {
        f"{s}/{c}/{n}" for s, c in (("training", "running"), ("validation", "jumping"))
        for n in ("truncated.mp4", "notes.mp4", "empty.mp4")}
    assert all(e["error"] and e["listed_in"][0].endswith(("Set.csv:9", "Set.csv:10",
                                                          "Set.csv:11")) for e in entries)
    assert len(load_split(out, "training")) == len(load_split(out, "validation")) == 8
    _assert_every_listed_video_decodes(out)
    run = tmp_path / "run_copy"
    assert main(["train", "--data", str(out), "--out", str(run), *TINY_TRAIN]) == 0
    quarantined = run / "quarantine.jsonl"
    assert not quarantined.exists() or quarantined.read_text().strip() == ""


def test_class_folders_survive_when_all_their_videos_fail(tmp_path, vids):
    src = tmp_path / "folders"
    for split in ("training", "validation"):
        vids.write_test_video(src / split / "a" / "0.mp4", 8)
        (src / split / "b").mkdir(parents=True)
        (src / split / "b" / "0.mp4").write_text("not a video\n")
        vids.write_test_video(src / split / "c" / "0.mp4", 8)
    out = tmp_path / "copy"
    summary = prepare_dataset(src, out, workers=1)
    assert summary["failed"] == 2
    for split in ("training", "validation"):
        assert load_split(out, split).classes == load_split(src, split).classes == ["a", "b", "c"]
        assert [r.label for r in load_split(out, split).records] == [0, 2]


# --------------------------------------------------------------------------- full disk


@pytest.fixture
def small_disk(tmp_path, disks):
    """A real tmpfs mount (root only); ``resize(kib)`` changes its size."""
    mount_point = disks.mount(tmp_path / "disk", "64k")

    def resize(kib: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={kib}k", str(mount_point)], check=True)

    return mount_point, resize


def _noisy_dataset(root, videos=8):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(videos):
        rel = f"{'ab'[i % 2]}/v{i}.mp4"
        write_video(root / "training" / rel, rng.integers(0, 256, (10, 64, 64, 3), np.uint8),
                    crf=10, preset="ultrafast")
        rows.append(f"{rel},{'ab'[i % 2]},3,0\n")
    (root / "trainingSet.csv").write_text("".join(rows))
    (root / "moments_categories.txt").write_text("a,0\nb,1\n")
    return root


def _one_error_line(capsys):
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert "Traceback" not in captured.err + captured.out
    assert len(lines) == 1, captured.err
    return lines[0]


def _du(folder):
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("workers", [1, 2])
def test_full_disk_then_resume(tmp_path, small_disk, monkeypatch, capsys, workers):
    monkeypatch.setenv("MOMENTLENS_QUIET", "1")
    src = _noisy_dataset(tmp_path / "src")
    reference = tmp_path / "reference"
    prepare_dataset(src, reference, short_side=64, workers=1)
    size = _du(reference / "training")
    disk, resize = small_disk
    resize(max(64, size // 2 // 1024))  # room for about half of the copy
    out = disk / "copy"
    argv = ["prepare", str(src), str(out), "--short-side", "64", "--workers", str(workers)]
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert "No space left on device" in line and f"{out}/training/" in line
    assert line.startswith("momentlens prepare: error: ")
    assert [p for p in out.rglob(".*") if p != out / SETTINGS_FILE] == []  # no temporary
    assert not (out / REPORT_FILE).exists()
    written = len(list(out.rglob("*.mp4")))
    assert 0 < written < 8
    resize(4 * size // 1024 + 256)  # space is back
    assert main(argv) == 0
    summary = json.loads((out / REPORT_FILE).read_text())
    assert (summary["skipped"], summary["done"], summary["failed"]) == (written, 8 - written, 0)
    for rec in load_split(out, "training").records:
        with open_video(rec.path) as reader:
            assert reader.num_frames == 10


def test_full_disk_while_writing_the_lists(tmp_path, small_disk, monkeypatch, capsys):
    monkeypatch.setenv("MOMENTLENS_QUIET", "1")
    src = _noisy_dataset(tmp_path / "src", videos=2)
    disk, resize = small_disk
    resize(1024)
    out = disk / "copy"
    argv = ["prepare", str(src), str(out), "--short-side", "64", "--workers", "1"]
    assert main(argv) == 0
    (out / REPORT_FILE).unlink()
    (out / "trainingSet.csv").unlink()
    with open(disk / "filler", "wb", buffering=0) as fh:  # fill the disk to the last page
        try:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
        except OSError:
            pass
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert re.search(rf"{out}/(moments_categories.txt|trainingSet.csv): cannot write "
                     r"\(No space left on device\)$", line), line
    assert [p for p in out.rglob(".*") if p != out / SETTINGS_FILE] == []
    assert not (out / "trainingSet.csv").exists()
    assert (out / "moments_categories.txt").read_text() == "a,0\nb,1\n"  # never half-written
    (disk / "filler").unlink()
    assert main(argv) == 0
    assert (out / "trainingSet.csv").read_bytes() == (src / "trainingSet.csv").read_bytes()


def test_lists_with_bom_and_crlf_keep_their_bytes_in_frames_mode(tmp_path, vids):
    src = vids.write_mit(tmp_path / "src", classes=("a", "b"), per_class=2, n=6,
                         splits=("training",))
    (src / "training" / "b" / "bad.mp4").write_bytes(b"")
    rows = ["a/tra_0.mp4,a,3,0", "b/bad.mp4,b,3,0", "a/tra_1.mp4,a,3,0", "b/tra_0.mp4,b,3,0",
            "b/tra_1.mp4,b,3,0"]
    (src / "trainingSet.csv").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(rows).encode())
    out = tmp_path / "frames"
    summary = prepare_dataset(src, out, mode="frames", workers=1)
    assert summary["failed"] == 1 and summary["failures"][0]["listed_in"] == ["trainingSet.csv:2"]
    kept = [r for r in rows if "bad" not in r]
    assert (out / "trainingSet.csv").read_bytes() == b"\xef\xbb\xbf" + "\r\n".join(kept).encode()
    records = load_split(out, "training").records
    assert [r.path.name for r in records] == ["tra_0", "tra_1", "tra_0", "tra_1"]
    assert all(r.path.is_dir() for r in records)


def test_a_rerun_with_other_settings_or_source_stops_and_keeps_the_copy(tmp_path, vids,
                                                                         capsys):
    # Re-running prepare into a folder skips the videos already there: right to resume,
    # wrong when the settings or the source changed (the old copies would stay under a
    # report claiming the new settings). It must stop, naming what differs.
    src = vids.write_mit(tmp_path / "mit", classes=("a", "b"), per_class=2, n=20,
                         splits=("training",))
    other = vids.write_mit(tmp_path / "other", classes=("a", "b"), per_class=2, n=20,
                           splits=("training",))
    out = tmp_path / "copy"
    prepare_dataset(src, out, short_side=24)
    before = {p: p.read_bytes() for p in out.rglob("*.mp4")}
    assert len(before) == 4
    assert main(["prepare", str(src), str(out), "--short-side", "48"]) == 2
    err = capsys.readouterr().err
    assert "short_side 24" in err and "short_side 48" in err and str(out) in err
    with pytest.raises(MomentlensError, match=r"mode video.*mode frames"):
        prepare_dataset(src, out, short_side=24, mode="frames")
    with pytest.raises(MomentlensError, match="source"):
        prepare_dataset(other, out, short_side=24)
    assert {p: p.read_bytes() for p in out.rglob("*.mp4")} == before  # untouched
    assert json.loads((out / REPORT_FILE).read_text())["short_side"] == 24
    again = prepare_dataset(src, out, short_side=24)  # the same settings: resumes
    assert again["skipped"] == 4 and again["done"] == 0
    # a run killed before its report still recorded its settings
    (out / REPORT_FILE).unlink()
    with pytest.raises(MomentlensError, match="gop 8.*gop 4"):
        prepare_dataset(src, out, short_side=24, gop=4)


def test_a_copy_inside_or_around_the_dataset_is_refused(tmp_path, vids, capsys):
    # `prepare DATA DATA/fast` used to work, and the copy then sat in the dataset: a folder
    # layout (UCF101, HMDB51) read it as one more class, and the next prepare as input.
    src = vids.write_mit(tmp_path / "mit", classes=("a", "b"), per_class=1, n=8,
                         splits=("training",))
    for out in (src / "fast", src / "training" / "fast", tmp_path):
        assert main(["prepare", str(src), str(out)]) == 2
        err = capsys.readouterr().err
        assert "inside" in err and "the copy and the dataset would mix" in err, err
    assert not (src / "fast").exists() and not (src / "training" / "fast").exists()
    assert not (tmp_path / "training").exists()
    assert prepare_dataset(src, tmp_path / "elsewhere", short_side=24)["done"] == 2
