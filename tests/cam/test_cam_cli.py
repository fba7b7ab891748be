"""``momentlens cam``: every file is written and readable; the gallery fragment."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from momentlens.cam.gallery import GalleryItem, gallery_html
from momentlens.cam.video import video_cams
from momentlens.cli import main
from momentlens.data.decode import open_video
from momentlens.data.encode import write_video
from momentlens.data.synth import all_classes, render_video
from momentlens.engine.checkpoint import load_model, save_model_file
from momentlens.models.registry import create_model

CLASSES = all_classes()[:4]


@pytest.fixture(scope="module")
def model_and_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cam")
    model = create_model("r3d10", num_classes=4, width=0.125, frames=8, size=32)
    meta = {"model": "r3d10", "num_classes": 4,
            "options": {"width": 0.125, "frames": 8, "size": 32}, "classes": CLASSES,
            "input": {"sampler": "clip", "frames": 8, "stride": 2, "size": 32, "resize": 37,
                      "norm": "imagenet"}}
    save_model_file(root / "model.safetensors", model, meta)
    frames, _ = render_video(CLASSES[1], seed=3, size=48, num_frames=24)
    video = root / "validation" / CLASSES[1] / "v.mp4"
    video.parent.mkdir(parents=True)
    # 48 x 45: non-square, odd (yuv444p keeps an odd width without padding)
    write_video(video, frames[:, :, :45], fps=12, pix_fmt="yuv444p")
    return root / "model.safetensors", video


def test_cam_command_writes_readable_files(model_and_video: tuple[Path, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    model, video = model_and_video
    out = tmp_path / "out"
    assert main(["cam", str(model), str(video), "--out", str(out), "--topk", "2",
                 "--frames", "5", "--device", "cpu"]) == 0
    assert "top-5:" in capsys.readouterr().out
    with Image.open(out / "cam.gif") as gif:
        assert gif.n_frames == 5
        assert min(gif.size) >= 256  # enlarged so the text is legible
    with open_video(out / "cam.mp4") as reader:
        assert reader.num_frames == 5
        clip = reader.get_frames(range(5))
        assert clip.std() > 0
    with np.load(out / "cam.npz") as z:
        assert z["heatmaps"].shape == (5, 48, 45) and z["heatmaps"].dtype == np.float32
        assert z["frame_indices"].shape == (5,)
        assert str(z["class_name"]) in CLASSES
        assert CLASSES[int(z["class_index"])] == str(z["class_name"])
        assert z["heatmaps_true"].shape == (5, 48, 45)  # true class from the folder name
        assert int(z["class_index_true"]) == 1
        assert "heatmaps_top2" in z.files
    with open(out / "evidence.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5
    assert [int(r["frame_index"]) for r in rows] == z_indices(out)
    assert float(rows[1]["time_s"]) == pytest.approx(int(rows[1]["frame_index"]) / 12, abs=1e-3)
    info = json.loads((out / "cam.json").read_text())
    assert info["true_class"] == CLASSES[1] and len(info["top5"]) == 4
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size[0] > sheet.size[1]  # frames in a row
    assert Image.open(out / "evidence.png").size[0] > 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files


def z_indices(out: Path) -> list[int]:
    with np.load(out / "cam.npz") as z:
        return [int(i) for i in z["frame_indices"]]


def test_cam_command_class_option_and_errors(model_and_video: tuple[Path, Path],
                                             tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    model, video = model_and_video
    out = tmp_path / "out"
    assert main(["cam", str(model), str(video), "--out", str(out), "--class", CLASSES[3],
                 "--device", "cpu"]) == 0
    with np.load(out / "cam.npz") as z:
        assert str(z["class_name"]) == CLASSES[3]
        assert z["heatmaps"].shape == (8, 48, 45)  # all input frames by default
    assert main(["cam", str(model), str(video), "--out", str(out), "--class", "juggling",
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "juggling" in err and all(c in err for c in CLASSES)
    assert main(["cam", str(model), str(tmp_path / "none.mp4"), "--out", str(out),
                 "--device", "cpu"]) == 2
    assert "none.mp4" in capsys.readouterr().err
    # A folder of videos (it used to fail as a frame folder without image_00001.jpg).
    assert main(["cam", str(model), str(video.parent), "--out", str(tmp_path / "o2"),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "is a folder of 1 video(s); cam maps one video" in err and video.name in err
    assert not (tmp_path / "o2").exists()


def test_gallery_html(model_and_video: tuple[Path, Path]) -> None:
    model_path, video = model_and_video
    model, meta = load_model(model_path)
    pred, true = video_cams(model, meta, video, class_names=[CLASSES[1]], topk=1, frames=4)
    wrong_true = CLASSES[2] if pred.class_name != CLASSES[2] else CLASSES[0]
    items = [GalleryItem(true_class=pred.class_name, predicted=pred),
             GalleryItem(true_class=wrong_true, predicted=pred, true=true)]
    frag = gallery_html(items)
    assert frag.count("data:image/png;base64,") == 2
    assert "Correct predictions" in frag and "Wrong predictions" in frag
    p = pred.probs[pred.class_index]
    assert f"true: {wrong_true}, predicted: {pred.class_name} ({p:.2f})" in frag
    assert "<script" not in frag


def test_cam_command_no_sliding_maps_the_single_view(model_and_video: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    model, video = model_and_video
    out = tmp_path / "out"
    assert main(["cam", str(model), str(video), "--out", str(out), "--device", "cpu"]) == 0
    info = json.loads((out / "cam.json").read_text())
    assert info["sliding"]  # r3d10: one time step for 8 frames, so windows by default
    assert info["frame_indices"][0] == 0 and info["frame_indices"][-1] == 23
    assert main(["cam", str(model), str(video), "--out", str(out), "--no-sliding",
                 "--device", "cpu"]) == 0
    info = json.loads((out / "cam.json").read_text())
    assert not info["sliding"]
    assert np.diff(info["frame_indices"]).tolist() == [2] * 7  # the 8 x 2 evaluation view


def test_contact_sheet_wraps_after_eight_columns() -> None:
    from momentlens.cam.render import contact_sheet

    frames = [np.zeros((40, 40, 3), dtype=np.uint8)] * 16
    sheet = contact_sheet([("frames", frames), ("CAM", frames)], cell_height=40,
                          label_width=100)
    assert sheet.shape[1] == 100 + 8 * (40 + 4)  # 8 columns, not 16
    assert sheet.shape[0] == 4 * (40 + 4)  # two bands of two rows


def test_evaluate_cam_scores_with_and_without_sliding(tmp_path: Path, write_model_file,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from momentlens.data.synth import generate

    data = tmp_path / "data"
    generate(data, train_per_class=1, val_per_class=1, size=32, num_frames=40, seed=0,
             classes=CLASSES[:2])
    model = write_model_file(tmp_path / "m", CLASSES[:2], 0, model="r3d10", width=0.125,
                             frames=8, stride=2, size=32, resize=32)
    for flags, sliding in (([], True), (["--no-sliding"], False)):
        out = tmp_path / f"eval{len(flags)}"
        assert main(["evaluate", str(model), "--data", str(data), "--out", str(out), "--cam",
                     "--workers", "0", "--device", "cpu", *flags]) == 0
        cam = json.loads((out / "metrics.json").read_text())["cam"]
        assert cam["sliding"] is sliding and cam["videos"] == 2
        assert 0.0 <= cam["pointing"] <= 1.0
    assert "CAM localisation: pointing game" in capsys.readouterr().out


def test_cam_under_torchrun_maps_the_video_once(model_and_video: tuple[Path, Path],
                                                tmp_path: Path) -> None:
    # One video: rank 0 maps and reports it, the other rank leaves at once (before, both
    # mapped it, printed it and raced to write the same files).
    import os
    import subprocess
    import sys

    model, video = model_and_video
    assert main(["cam", str(model), str(video), "--out", str(tmp_path / "one"),
                 "--device", "cpu"]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1", MOMENTLENS_QUIET="1")
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "momentlens", "cam", str(model), str(video), "--out", str(tmp_path / "two"),
         "--device", "cpu"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("top-5:") == 1 and done.stderr.count("mapping ") == 1
    with np.load(tmp_path / "one" / "cam.npz") as a, np.load(tmp_path / "two" / "cam.npz") as b:
        assert np.array_equal(a["heatmaps"], b["heatmaps"])
