"""The synthetic Moments-format dataset: layout, formats, determinism, boxes, class design."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from momentlens.cli import main
from momentlens.data import synth
from momentlens.utils import MomentlensError

SIZE = 32


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    rc = main(["synth", str(out), "--train-per-class", "2", "--val-per-class", "1",
               "--size", str(SIZE), "--seed", "7", "--workers", "2"])
    assert rc == 0
    return out


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_release_layout_and_formats(tiny: Path):
    classes = synth.all_classes()
    cat_lines = (tiny / "moments_categories.txt").read_text().splitlines()
    assert cat_lines == [f"{c},{i}" for i, c in enumerate(classes)]
    for split, csv_name, per_class in [("training", "trainingSet.csv", 2),
                                       ("validation", "validationSet.csv", 1)]:
        rows = _rows(tiny / csv_name)
        assert len(rows) == per_class * len(classes)
        # No header: the first row is a video row like the real release.
        assert rows[0][0].endswith(".mp4")
        for rel, label, agree, disagree in rows:
            cls, name = rel.split("/")
            assert cls == label and label in classes
            assert int(agree) >= 0 and int(disagree) >= 0
            assert (tiny / split / cls / name).is_file()
        on_disk = sorted(p.relative_to(tiny / split).as_posix()
                         for p in (tiny / split).rglob("*.mp4"))
        assert on_disk == sorted(r[0] for r in rows)
    info = synth.load_info(tiny)
    assert len(info["appearance_classes"]) >= 4
    assert len(info["time_reversed_pairs"]) >= 3


def test_every_video_decodes_to_90_frames(tiny: Path):
    videos = sorted(tiny.rglob("*.mp4"))
    assert len(videos) == 30
    for path in videos:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert stream.codec_context.pix_fmt == "yuv420p"
            assert float(stream.average_rate) == 30.0
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == 90
        assert frames[0].shape == (SIZE, SIZE, 3)


def test_boxes_inside_frame_and_follow_the_motion(tiny: Path):
    boxes = json.loads((tiny / "boxes.json").read_text())
    assert (boxes["width"], boxes["height"]) == (SIZE, SIZE)
    assert len(boxes["videos"]) == 30
    for key, per_frame in boxes["videos"].items():
        b = np.array(per_frame)
        assert b.shape == (90, 4), key
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
        assert (b[:, 2] <= SIZE).all() and (b[:, 3] <= SIZE).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        cls = key.split("/")[1]
        cy = (b[:, 1] + b[:, 3]) / 2
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        if cls == "falling":
            assert cy[-1] - cy[0] > 0.25 * SIZE
        elif cls == "rising":
            assert cy[0] - cy[-1] > 0.25 * SIZE
        elif cls == "opening":
            assert area[-1] > 3 * area[0]
        elif cls == "closing":
            assert area[0] > 3 * area[-1]


def test_box_matches_rendered_object():
    # Easy look (geometry is the same in every look): the object is saturated, the
    # background almost grey, so saturation locates it.
    frames, boxes = synth.render_video("falling", 3, size=64, num_frames=30, look="easy")
    for img, (x0, y0, x1, y1) in zip(frames, boxes):
        rgb = img.astype(int)
        sat = rgb.max(axis=2) - rgb.min(axis=2)
        ys, xs = np.nonzero(sat > 100)
        assert len(ys) > 20
        assert x0 - 1 <= xs.min() and xs.max() <= x1 and y0 - 1 <= ys.min() and ys.max() <= y1


def test_same_seed_same_files(tmp_path: Path, tiny: Path):
    out = tmp_path / "again"
    # Another worker count must not change anything.
    main(["synth", str(out), "--train-per-class", "2", "--val-per-class", "1",
          "--size", str(SIZE), "--seed", "7", "--workers", "1"])
    for path in sorted(p for p in tiny.rglob("*") if p.is_file()):
        rel = path.relative_to(tiny)
        if rel.name == "synth_info.json":
            a, b = json.loads(path.read_text()), json.loads((out / rel).read_text())
            a.pop("seconds"), b.pop("seconds")
            assert a == b
        else:
            assert path.read_bytes() == (out / rel).read_bytes(), rel
    other = tmp_path / "other"
    main(["synth", str(other), "--train-per-class", "2", "--val-per-class", "1",
          "--size", str(SIZE), "--seed", "8", "--workers", "1", "--classes", "ring"])
    rel = Path("training/ring/synth-trn-ring-0000.mp4")
    assert (other / rel).read_bytes() != (tiny / rel).read_bytes()


@pytest.mark.parametrize("fwd,rev", list(synth.TIME_REVERSED_PAIRS))
def test_reversed_class_is_the_forward_class_played_backwards(fwd: str, rev: str):
    f_frames, f_boxes = synth.render_video(fwd, (1, 2, 3), size=SIZE, num_frames=40)
    r_frames, r_boxes = synth.render_video(rev, (1, 2, 3), size=SIZE, num_frames=40)
    assert not np.array_equal(f_frames, r_frames)  # the order differs ...
    np.testing.assert_array_equal(f_frames[::-1], r_frames)  # ... and only the order
    np.testing.assert_array_equal(f_boxes[::-1], r_boxes)


@pytest.mark.parametrize("fwd,rev", list(synth.TIME_REVERSED_PAIRS))
def test_pair_per_frame_statistics_match_but_order_differs(fwd: str, rev: str):
    """Independent videos of the two classes: same per-frame statistics, opposite trends.

    On the easy look, where saturation separates object from background (the reversal
    construction is the same in every look).
    """
    n, frames = 40, 30

    def stats(cls: str, offset: int) -> tuple[np.ndarray, np.ndarray]:
        per_frame, trend = [], []
        for i in range(n):
            video, boxes = synth.render_video(cls, (offset, i), size=SIZE, num_frames=frames,
                                               look="easy")
            cy = (boxes[:, 1] + boxes[:, 3]) / 2
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            sat = video.max(axis=3).astype(float) - video.min(axis=3)
            # Per-frame features pooled over time: object position, size, colour mass.
            per_frame.append(np.stack([cy, area, sat.mean(axis=(1, 2))], axis=1))
            fill = sat[:, SIZE // 2:, :].mean(axis=(1, 2)) - sat[:, :SIZE // 2, :].mean(axis=(1, 2))
            trend.append([np.corrcoef(np.arange(frames), x)[0, 1] if np.std(x) > 0 else 0
                          for x in (cy, area, sat.mean(axis=(1, 2)), fill)])
        return np.concatenate(per_frame), np.array(trend)

    a, ta = stats(fwd, 100)
    b, tb = stats(rev, 200)
    for k in range(a.shape[1]):
        se = np.sqrt(a[:, k].var() / n + b[:, k].var() / n)
        assert abs(a[:, k].mean() - b[:, k].mean()) < 4 * se + 1e-9, (fwd, rev, k)
    # The order differs: the feature that carries the motion trends one way in the
    # forward class and the other way in the reversed class, in every video.
    key = {"falling": 0, "opening": 1, "filling": 2}[fwd]
    assert (ta[:, key] > 0.5).all() and (tb[:, key] < -0.5).all()


def test_non_empty_out_dir_refused_unless_overwrite(tmp_path: Path, capsys):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    rc = main(["synth", str(out), "--size", "16", "--train-per-class", "1",
               "--val-per-class", "1", "--classes", "ring", "--workers", "1"])
    assert rc == 2
    assert "not empty" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["keep.txt"]
    rc = main(["synth", str(out), "--size", "16", "--train-per-class", "1",
               "--val-per-class", "1", "--classes", "ring", "--workers", "1", "--overwrite"])
    assert rc == 0
    assert (out / "keep.txt").read_text() == "user file"
    assert synth.is_complete(out)
    with pytest.raises(MomentlensError, match="unknown synthetic class"):
        synth.generate(tmp_path / "x", classes=["juggling"])


def test_killed_generator_leaves_no_half_written_video(tmp_path: Path):
    out = tmp_path / "ds"
    env = {**os.environ, "MOMENTLENS_QUIET": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "momentlens", "synth", str(out), "--size", "96",
         "--train-per-class", "40", "--val-per-class", "1", "--workers", "2"],
        env=env, start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        if out.is_dir() and len(list(out.rglob("*.mp4"))) >= 6:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the workers too, mid-write
    proc.wait()
    finals = [p for p in out.rglob("*.mp4") if not p.name.startswith(".")]
    assert finals, "nothing was written before the kill"
    assert not synth.is_complete(out)
    for path in finals:
        with av.open(str(path)) as container:
            assert sum(1 for _ in container.decode(video=0)) == 90, path


def test_help_lists_synth(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "synth" in capsys.readouterr().out
    result = subprocess.run([sys.executable, "-m", "momentlens", "--help"],
                            capture_output=True, text=True, check=True)
    assert "synth" in result.stdout


def test_looks_and_knobs_are_recorded(tmp_path: Path):
    assert synth.make_look() == synth.PRESETS["hard"]
    assert synth.PRESETS["hard"].colour == "random" and synth.PRESETS["easy"].colour == "fixed"
    look = synth.make_look("easy", noise=0.1, distractors=None)
    assert (look.colour, look.background, look.distractors, look.noise) == ("fixed", "grey", 0, 0.1)
    with pytest.raises(MomentlensError, match="colour"):
        synth.make_look(colour="pink")
    with pytest.raises(MomentlensError, match="preset"):
        synth.make_look("extreme")
    out = tmp_path / "ds"
    synth.generate(out, train_per_class=1, val_per_class=1, size=16, num_frames=4,
                   workers=1, classes=["ring"], preset="medium", background="blocks")
    info = synth.load_info(out)
    assert info["preset"] == "medium"
    assert info["look"] == {"colour": "random", "background": "blocks", "distractors": 1,
                            "noise": 0.02}
    assert info["geometry"]["base_radius"] == list(synth.BASE_RADIUS)


@pytest.mark.parametrize("look", ["hard", "easy"])
def test_every_look_renders_every_class(look: str):
    for cls in synth.all_classes():
        frames, boxes = synth.render_video(cls, 4, size=48, num_frames=6, look=look)
        assert frames.shape == (6, 48, 48, 3) and frames.dtype == np.uint8
        assert boxes.shape == (6, 4) and frames.std() > 5


def test_hard_look_varies_colours_and_backgrounds():
    """Object colours are not tied to the class: the same class takes many hues."""
    hues = []
    for i in range(24):
        frames, boxes = synth.render_video("square", (9, i), size=64, num_frames=2,
                                           look=synth.make_look(distractors=0, noise=0.0))
        x0, y0, x1, y1 = boxes[0]
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        r, g, b = frames[0, cy, cx].astype(float) / 255
        hues.append(np.arctan2(np.sqrt(3) * (g - b), 2 * r - g - b))
    spread = np.abs(np.exp(1j * np.array(hues)).mean())  # 1 = one hue, 0 = spread out
    assert spread < 0.5


def test_size_and_position_shared_by_the_appearance_classes():
    n = 40
    centres, sides = {}, {}
    for cls in synth.APPEARANCE_CLASSES:
        c, s = [], []
        for i in range(n):
            _, boxes = synth.render_video(cls, (11, i), size=64, num_frames=20, look="easy")
            b = boxes.astype(float)
            c.append([(b[:, 0] + b[:, 2]).mean() / 2, (b[:, 1] + b[:, 3]).mean() / 2])
            s.append(max(b[0, 2] - b[0, 0], b[0, 3] - b[0, 1]))
        centres[cls], sides[cls] = np.array(c), np.array(s)
    every = np.concatenate(list(centres.values()))
    for cls, c in centres.items():
        se = every.std(axis=0) * np.sqrt(1 / n + 1 / len(every))
        assert (np.abs(c.mean(axis=0) - every.mean(axis=0)) < 4 * se).all(), cls
    # The size ranges overlap: no class is told apart by its size.
    lo = max(np.percentile(s, 20) for s in sides.values())
    hi = min(np.percentile(s, 80) for s in sides.values())
    assert hi > lo, sides
