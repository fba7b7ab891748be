"""Pointing game and IoU against hand-computed values; boxes.json lookup."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from momentlens.cam.localize import (
    box_iou,
    load_boxes,
    peak,
    pointing_game,
    score_localization,
)
from momentlens.cam.video import VideoCAM
from momentlens.utils import MomentlensError


def _spot(h: int, w: int, y: int, x: int) -> np.ndarray:
    hm = np.zeros((h, w), dtype=np.float32)
    hm[y, x] = 1.0
    return hm


def test_pointing_game_inside_edges_and_tolerance() -> None:
    box = (10, 5, 20, 15)  # x 10..19, y 5..14
    assert pointing_game(_spot(30, 40, 5, 10), box)  # top-left pixel is inside
    assert pointing_game(_spot(30, 40, 14, 19), box)  # bottom-right pixel is inside
    assert not pointing_game(_spot(30, 40, 15, 19), box)  # y1 is exclusive
    assert not pointing_game(_spot(30, 40, 10, 20), box)  # x1 is exclusive
    assert pointing_game(_spot(30, 40, 10, 22), box, tolerance=3)
    assert not pointing_game(_spot(30, 40, 10, 23), box, tolerance=3)
    assert not pointing_game(np.ones((30, 40)), box)  # a flat map points nowhere


def test_plateau_peak_is_its_pixel_nearest_the_centre() -> None:
    hm = np.zeros((10, 10))
    hm[6:9, 2:7] = 5.0  # rows 6..8, columns 2..6; frame centre (4.5, 4.5)
    assert peak(hm) == (6.0, 4.0)
    assert pointing_game(hm, (3, 6, 6, 7))
    assert not pointing_game(hm, (0, 0, 3, 3))  # the plateau's first pixel is not the point


def test_coarse_edge_cell_points_at_its_centre() -> None:
    """A 2x2 map upsampled to 64x64: the top-left cell's value fills the top-left
    quadrant up to its centre (16, 16); the point is that centre, not the corner."""
    import torch

    low = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    hm = torch.nn.functional.interpolate(low, size=(64, 64), mode="bilinear",
                                         align_corners=False)[0, 0].numpy()
    assert peak(hm) == (15.0, 15.0)
    assert pointing_game(hm, (10, 10, 22, 22))  # an object around the cell centre
    assert not pointing_game(hm, (0, 0, 8, 8))  # not the frame corner


def test_box_iou_hand_computed() -> None:
    hm = np.zeros((10, 10))
    hm[0:4, 0:4] = 1.0   # 16 px at the maximum
    hm[4, 0:4] = 0.4     # below half the range: left out
    box = (2, 2, 6, 6)   # 16 px, overlap rows 2..3 x cols 2..3 = 4 px
    assert box_iou(hm, box) == pytest.approx(4 / (16 + 16 - 4))
    assert box_iou(hm, box, threshold=0.3) == pytest.approx(6 / (20 + 16 - 6))
    assert box_iou(hm, (0, 0, 4, 4)) == pytest.approx(1.0)
    # negative maps: the threshold is a fraction of the min-max range
    assert box_iou(hm - 10.0, (0, 0, 4, 4)) == pytest.approx(1.0)
    assert box_iou(np.zeros((10, 10)), box) == 0.0


def _cam(maps: list[np.ndarray], indices: list[int]) -> VideoCAM:
    k = len(maps)
    h, w = maps[0].shape
    return VideoCAM(heatmaps=np.stack(maps).astype(np.float32),
                    frame_indices=np.array(indices), class_index=0, class_name="a",
                    probs=np.array([1.0, 0.0], dtype=np.float32),
                    frames=np.zeros((k, h, w, 3), dtype=np.uint8),
                    evidence=np.zeros(k, dtype=np.float32))


def test_score_localization_averages_frames_then_videos() -> None:
    boxes = np.array([[0, 0, 5, 5], [5, 5, 10, 10], [0, 0, 0, 0]])  # frame 2: no object
    hit, miss = _spot(10, 10, 1, 1), _spot(10, 10, 8, 1)
    v1 = _cam([hit, hit, miss], [0, 0, 2])   # 2 scored frames, both hits
    v2 = _cam([hit, miss], [0, 1])            # 1 hit, 1 miss
    v3 = _cam([miss], [0])                    # 0 hits
    out = score_localization([v1, v2, v3], [boxes] * 3, ["a", "a", "b"])
    assert out["per_class"]["a"]["pointing"] == pytest.approx(0.75)  # mean of 1.0 and 0.5
    assert out["per_class"]["a"]["n"] == 2
    assert out["per_class"]["b"] == {"pointing": 0.0, "iou": 0.0, "n": 1}
    assert out["pointing"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    # IoU of a 1-px spot with a 25-px box
    assert out["per_class"]["a"]["iou"] == pytest.approx((1 / 25 + 0.5 / 25) / 2)
    assert out["videos"] == 3
    with pytest.raises(ValueError):
        score_localization([v1], [], ["a"])


def test_load_boxes(tmp_path: Path) -> None:
    videos = {"validation/a/x.mp4": [[1, 2, 3, 4], [2, 3, 4, 5]]}
    (tmp_path / "boxes.json").write_text(json.dumps({"width": 8, "height": 8, "videos": videos}))
    b = load_boxes(tmp_path, "validation", "a/x.mp4")
    np.testing.assert_array_equal(b, [[1, 2, 3, 4], [2, 3, 4, 5]])
    np.testing.assert_array_equal(load_boxes(tmp_path, "validation", "validation/a/x.mp4"), b)
    assert load_boxes(tmp_path, "validation", "a/y.mp4") is None
    with pytest.raises(MomentlensError, match="boxes.json"):
        load_boxes(tmp_path / "nowhere", "validation", "a/x.mp4")
