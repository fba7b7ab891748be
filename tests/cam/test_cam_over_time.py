"""CAM over time (issue 20): a model whose map has fewer time steps than its input gets
sliding windows by default, so its class evidence follows what happens in the video."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from momentlens.cam.video import video_cams
from momentlens.commands.cam import map_video
from momentlens.data.encode import write_video
from momentlens.models.base import VideoClassifier

N, HALF = 48, 24  # frames of the video; red object in 0..23, blue object in 24..47
META = {"classes": ["red", "blue"],
        "input": {"sampler": "clip", "frames": 8, "stride": 2, "size": 32, "resize": 32,
                  "norm": "none"}}


class ColourClock(VideoClassifier):
    """A 3D-like model: features are the red and blue channels pooled over *all* input
    frames (``T' = 1``) and 4 x 4 pixels; class "red" scores red minus blue, "blue" the
    reverse. One evaluation view therefore gives one flat evidence value per class."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
            self.fc.bias.zero_()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.avg_pool3d(x[:, [0, 2]], (x.shape[2], 4, 4))


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frames = np.full((N, 48, 48, 3), 40, dtype=np.uint8)
    frames[:HALF, 14:34, 14:34] = (230, 30, 30)  # a red square, then
    frames[HALF:, 14:34, 14:34] = (30, 30, 230)  # a blue one in the same place
    path = tmp_path_factory.mktemp("over_time") / "red_then_blue.mp4"
    write_video(path, frames, fps=12)
    return path


def _crossing(frame_indices: np.ndarray, red: np.ndarray, blue: np.ndarray) -> float:
    """The frame where red-minus-blue evidence changes sign, which must happen once, from
    positive to negative."""
    diff = np.asarray(red) - np.asarray(blue)
    signs = np.sign(diff)
    assert signs[0] > 0 and signs[-1] < 0, diff
    assert np.count_nonzero(np.diff(signs)) == 1, diff  # one crossing, no flicker
    k = int(np.argmax(signs < 0))
    return (frame_indices[k - 1] + frame_indices[k]) / 2


def test_class_evidence_crosses_over_in_the_middle(video: Path) -> None:
    red, blue = video_cams(ColourClock(), META, video, class_names=["red", "blue"], topk=0,
                           frames=8)
    assert red.sliding  # chosen because T' = 1 < T = 8, not asked for
    assert red.frame_indices[0] == 0 and red.frame_indices[-1] == N - 1
    assert abs(_crossing(red.frame_indices, red.evidence, blue.evidence) - HALF) <= 4
    # the maps follow too: on the object's square, red dominates early, blue late
    assert red.heatmaps[0, 24, 24] > blue.heatmaps[0, 24, 24]
    assert red.heatmaps[-1, 24, 24] < blue.heatmaps[-1, 24, 24]
    # what sliding fixes: one view gives one flat value per class
    flat = video_cams(ColourClock(), META, video, class_names=["red"], topk=0, frames=8,
                      sliding=False)[0]
    assert not flat.sliding and np.ptp(flat.evidence) < 1e-5


def test_evidence_csv_of_the_cam_command_varies_over_time(video: Path, tmp_path: Path) -> None:
    out = tmp_path / "cam"
    result = map_video(ColourClock(), META, video, out, topk=2, frames=8)
    assert result["sliding"]
    with open(out / "evidence.csv") as fh:
        rows = list(csv.DictReader(fh))
    info = json.loads((out / "cam.json").read_text())
    columns = {info["class_name"]: "evidence", info["maps"]["top2"]: "evidence_top2"}
    frame_indices = np.array([int(r["frame_index"]) for r in rows])
    red = [float(r[columns["red"]]) for r in rows]
    blue = [float(r[columns["blue"]]) for r in rows]
    assert abs(_crossing(frame_indices, red, blue) - HALF) <= 4
    with np.load(out / "cam.npz") as z:
        assert z["heatmaps"].shape == (8, 48, 48)
        assert np.ptp(z["evidence"]) > 0.1
