"""Class activation maps: hand-computed values, time alignment, crop undoing, every model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from momentlens.cam.maps import (
    cam_forward,
    cam_from_features,
    class_activation_maps,
    grad_cam,
    temporal_evidence,
)
from momentlens.cam.video import video_cam, video_cams
from momentlens.data.encode import write_video
from momentlens.engine.checkpoint import load_model, save_model_file
from momentlens.models.base import VideoClassifier
from momentlens.models.registry import create_model, list_models
from momentlens.utils import MomentlensError


class FixedFeatures(VideoClassifier):
    """A model whose last convolutional map is a given tensor ``(C, T', H', W')``."""

    def __init__(self, features: torch.Tensor, num_classes: int = 3) -> None:
        super().__init__()
        self.register_buffer("maps", features)
        self.fc = nn.Linear(features.shape[0], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps[None].expand(x.shape[0], *self.maps.shape)


def test_cam_equals_hand_computed_map() -> None:
    # Two channels on a 1 x 2 x 2 grid, hand-picked weights.
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]], [[[0.0, 1.0], [0.0, -1.0]]]])
    model = FixedFeatures(f)
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[1.0, 0.0], [2.0, -3.0], [0.5, 0.5]]))
        model.fc.bias.copy_(torch.tensor([0.0, 1.0, -2.0]))
    logits, feats = cam_forward(model, torch.zeros(1, 3, 1, 8, 8))
    cam = cam_from_features(model, feats, 1)
    # class 1: 2 * c0 - 3 * c1
    expected = torch.tensor([[[[2.0, 1.0], [6.0, 11.0]]]])
    torch.testing.assert_close(cam, expected)
    # the logit is the map's mean plus the bias
    assert logits[0, 1].item() == pytest.approx(expected.mean().item() + 1.0)
    # a per-item class choice
    both = cam_from_features(model, torch.cat([feats, feats]), torch.tensor([0, 2]))
    torch.testing.assert_close(both[0], f[0])
    torch.testing.assert_close(both[1], 0.5 * (f[0] + f[1]))


def test_upsampling_follows_the_receptive_field_grid_in_space() -> None:
    f = torch.zeros(1, 1, 2, 2)
    f[0, 0, 1, 1] = 1.0  # bottom-right cell
    model = FixedFeatures(f, num_classes=1)
    with torch.no_grad():
        model.fc.weight.fill_(1.0)
    cam = class_activation_maps(model, torch.zeros(1, 3, 1, 8, 8), 0)[0, 0]
    assert cam.shape == (8, 8)
    # stride 4: cell i is centred on pixel 4 i, so pixel p reads cell coordinate p / 4
    # (clamped to [0, 1]); cell (1, 1) is centred on pixel (4, 4)
    assert cam[4:, 4:].min().item() == pytest.approx(1.0)
    assert cam[0, :].abs().max().item() == 0.0 and cam[:, 0].abs().max().item() == 0.0
    assert cam[2, 2].item() == pytest.approx(0.5 * 0.5)
    assert cam[3, 3].item() == pytest.approx(0.75 ** 2)
    assert cam[2, 6].item() == pytest.approx(0.5)
    assert torch.unravel_index(cam.argmax(), cam.shape) == (4, 4)  # first maximum: the cell centre


def test_last_temporal_slice_maps_to_last_frames() -> None:
    # 4 time slices summarising 16 frames: evidence only in the last slice.
    f = torch.zeros(1, 4, 1, 1)
    f[0, 3] = 1.0
    model = FixedFeatures(f, num_classes=1)
    with torch.no_grad():
        model.fc.weight.fill_(1.0)
        model.fc.bias.zero_()
    cam = class_activation_maps(model, torch.zeros(1, 3, 16, 4, 4), 0)[0, :, 0, 0]
    assert cam.shape == (16,)
    # slice j is centred on frame 4 j: frames 12..15 hold the last slice's value,
    # frames 0..8 (slices 0..2) stay untouched, frames 9..11 interpolate
    np.testing.assert_allclose(cam[12:].numpy(), 1.0)
    assert cam[:9].abs().max().item() == 0.0
    np.testing.assert_allclose(cam[9:12].numpy(), [0.25, 0.5, 0.75])
    ev = temporal_evidence(model, model.forward_features(torch.zeros(1, 3, 16, 4, 4)), 0, 16)
    torch.testing.assert_close(ev[0], cam)  # 1x1 space, no bias: evidence == map


# One small model per family (2D ResNet, 3D ResNet, 3D ResNeXt, bottleneck); the deep
# variants share the same classes and would only add seconds.
FAMILIES = [n for n in ("r2d18", "r2d50", "r3d10", "rx3d50") if n in list_models()]


@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_cam_mean_plus_bias_is_logit(name: str) -> None:
    torch.manual_seed(1)
    model = create_model(name, num_classes=3, width=0.125, frames=4, size=32).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        logits, feats = cam_forward(model, x)
        low = cam_from_features(model, feats, torch.tensor([2, 0]))
        full = class_activation_maps(model, x, torch.tensor([2, 0]))
        ev = temporal_evidence(model, feats, torch.tensor([2, 0]))
    bias = model.classifier.bias[[2, 0]]
    torch.testing.assert_close(low.mean(dim=(1, 2, 3)) + bias, logits[[0, 1], [2, 0]],
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ev.mean(dim=1), logits[[0, 1], [2, 0]], rtol=1e-4, atol=1e-4)
    assert full.shape == (2, 4, 32, 32)


def test_grad_cam_is_relu_of_cam_scaled() -> None:
    torch.manual_seed(2)
    model = create_model("r3d10", num_classes=3, width=0.125, frames=8, size=32).eval()
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        _, feats = cam_forward(model, x)
        cam = cam_from_features(model, feats, 1)
    g = grad_cam(model, x, 1, out_thw=(None, None, None))
    n = feats.shape[2] * feats.shape[3] * feats.shape[4]
    torch.testing.assert_close(g, torch.relu(cam) / n, rtol=1e-4, atol=1e-6)
    assert grad_cam(model, x, 1).shape == (1, 8, 32, 32)


# ----------------------------------------------------------------------------- videos


class PeakModel(VideoClassifier):
    """Features = the clip's red channel pooled 4x4: the CAM peaks where the frame is red."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.fc.bias.zero_()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool3d(x[:, :1], (1, 4, 4))


def _meta(**input_over: object) -> dict:
    spec = {"sampler": "clip", "frames": 4, "stride": 1, "size": 32, "resize": 40, "norm": "none"}
    spec.update(input_over)
    return {"classes": ["red", "blue"], "input": spec}


def test_undoing_crop_and_resize_puts_the_peak_back(tmp_path: Path) -> None:
    h, w = 97, 173  # odd, non-square source
    frames = np.zeros((6, h, w, 3), dtype=np.uint8)
    cy, cx = 60, 95  # inside the centre crop (source x 44..129 for resize 40 / crop 32)
    frames[:, cy - 6:cy + 7, cx - 6:cx + 7, 0] = 255
    path = tmp_path / "red" / "v.mp4"
    path.parent.mkdir()
    write_video(path, frames, fps=10, pix_fmt="yuv444p", crf=0)
    cam = video_cam(PeakModel(), _meta(), path, "red")
    assert cam.heatmaps.shape == (4, h, w) and cam.heatmaps.dtype == np.float32
    assert cam.frames.shape == (4, h, w, 3)
    np.testing.assert_array_equal(cam.frame_indices, [1, 2, 3, 4])
    for hm in cam.heatmaps:
        py, px = np.unravel_index(np.argmax(hm), hm.shape)
        # one feature cell is 4 crop px = 4 / 0.412 ~ 10 source px: the peak must be
        # within half a cell of the red square's centre
        assert abs(py - cy) <= 5 and abs(px - cx) <= 5, (py, px)
    # outside the crop: the map's minimum, never a peak
    assert cam.heatmaps[0, :, :10].max() == pytest.approx(cam.heatmaps[0].min())
    assert cam.class_name == "red" and cam.class_index == 0
    assert cam.probs.shape == (2,) and cam.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert cam.fps == pytest.approx(10.0)


def test_video_cams_topk_true_class_and_frames(tmp_path: Path) -> None:
    frames = np.zeros((20, 40, 48, 3), dtype=np.uint8)
    frames[..., 2] = 200
    path = tmp_path / "v.mp4"
    write_video(path, frames, fps=10)
    meta = _meta(sampler="segments", frames=8)
    maps = video_cams(PeakModel(), meta, path, class_names=["red"], topk=2, frames=3)
    assert [m.class_name for m in maps[:2]] == [maps[0].classes[i]
                                               for i in np.argsort(-maps[0].probs)]
    assert maps[2].class_name == "red"
    assert all(m.heatmaps.shape == (3, 40, 48) for m in maps)
    np.testing.assert_array_equal(maps[0].frame_indices, [1, 11, 18])  # segments 0, 4, 7
    with pytest.raises(MomentlensError, match="red, blue"):
        video_cam(PeakModel(), meta, path, "green")


def test_video_cam_with_a_saved_model(tmp_path: Path) -> None:
    model = create_model("r3d10", num_classes=4, width=0.125, frames=8, size=32)
    meta = {"model": "r3d10", "num_classes": 4,
            "options": {"width": 0.125, "frames": 8, "size": 32},
            "classes": ["a", "b", "c", "d"],
            "input": {"sampler": "clip", "frames": 8, "stride": 2, "size": 32, "resize": 36,
                      "norm": "imagenet"}}
    save_model_file(tmp_path / "m.safetensors", model, meta)
    loaded, meta2 = load_model(tmp_path / "m.safetensors")
    rng = np.random.default_rng(0)
    path = tmp_path / "v.mp4"
    write_video(path, rng.integers(0, 255, (30, 36, 50, 3), dtype=np.uint8), fps=15)
    cam = video_cam(loaded, meta2, path)
    assert cam.class_index == cam.predicted_index
    assert cam.heatmaps.shape == (8, 36, 50)
    # r3d10's last map has one time step for 8 frames: sliding windows by default,
    # 8 maps spread over the whole video
    assert cam.sliding
    np.testing.assert_array_equal(cam.frame_indices, np.round(np.linspace(0, 29, 8)))
    assert np.isfinite(cam.heatmaps).all() and cam.evidence.shape == (8,)
    one = video_cam(loaded, meta2, path, sliding=False)  # the single evaluation view
    assert not one.sliding
    np.testing.assert_array_equal(np.diff(one.frame_indices), 2)
    np.testing.assert_array_equal(one.probs, cam.probs)  # probabilities of the same view


def test_sliding_maps_follow_a_moving_object_over_the_whole_video(tmp_path: Path) -> None:
    from momentlens.cam.localize import peak

    n, h, w = 40, 48, 48
    frames = np.zeros((n, h, w, 3), dtype=np.uint8)
    ys = np.round(np.linspace(8, 40, n)).astype(int)  # a red square moving down
    for t, y in enumerate(ys):
        frames[t, y - 4:y + 4, 20:28, 0] = 255
    path = tmp_path / "v.mp4"
    write_video(path, frames, fps=10)
    meta = _meta(frames=8, stride=2, size=48, resize=48)
    cam = video_cams(PeakModel(), meta, path, class_names=["red"], topk=0, frames=5,
                     sliding=True)[0]
    # five frames spread over the whole video, not just the centre view
    np.testing.assert_array_equal(cam.frame_indices, [0, 10, 20, 29, 39])
    assert cam.heatmaps.shape == (5, h, w) and cam.frames.shape == (5, h, w, 3)
    for hm, f, shown in zip(cam.heatmaps, cam.frame_indices, cam.frames):
        py, px = peak(hm)
        assert abs(py - ys[f]) <= 4 and 18 <= px <= 29, (f, py, px)
        assert shown[ys[f], 24, 0] > 200  # the frame shown is the frame mapped
    fixed = video_cams(PeakModel(), meta, path, class_names=["red"], topk=0, frames=5)[0]
    assert fixed.frame_indices.max() - fixed.frame_indices.min() <= 14  # one 8 x 2 view
