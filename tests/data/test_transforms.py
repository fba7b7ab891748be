"""Spatial transforms: shapes, flip consistency, geometry, normalisation values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from momentlens.data import normalize as N
from momentlens.data import transforms as T


def _clip(t=4, h=60, w=80, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_resize_short_side_shapes():
    assert T.resize_short_side(_clip(h=60, w=80), 30).shape == (4, 30, 40, 3)
    assert T.resize_short_side(_clip(h=97, w=173), 128).shape == (4, 128, 228, 3)
    assert T.resize_short_side(_clip(h=80, w=60), 30).shape == (4, 40, 30, 3)
    flat = np.full((2, 20, 30, 3), 77, np.uint8)
    assert np.all(T.resize_short_side(flat, 10) == 77)


def test_center_and_random_crop():
    clip = _clip()
    c = T.center_crop(clip, 40)
    assert c.shape == (4, 40, 40, 3)
    np.testing.assert_array_equal(c, clip[:, 10:50, 20:60])
    r = T.random_crop(clip, 40, np.random.default_rng(0))
    assert r.shape == (4, 40, 40, 3)
    # one position for all frames: each frame's crop is found at the same place
    hits = [np.argwhere(np.all(clip[t] == r[t][0, 0], axis=-1)) for t in range(4)]
    assert r.base is None or not np.shares_memory(r, clip)
    assert hits[0].size
    with pytest.raises(ValueError, match="smaller than the crop"):
        T.center_crop(clip, 61)


def test_multiscale_corner_crop():
    assert T.MULTISCALE_SCALES[1] == pytest.approx(0.840896, abs=1e-6)
    assert T.corner_box((60, 80), 1.0, "tl") == (0, 0, 60, 60)
    assert T.corner_box((60, 80), 1.0, "br") == (0, 20, 60, 80)
    assert T.corner_box((60, 80), 0.5, "c") == (15, 25, 45, 55)
    rng = np.random.default_rng(0)
    for _ in range(10):
        assert T.multiscale_corner_crop(_clip(), 32, rng).shape == (4, 32, 32, 3)


def test_hflip_whole_clip(vids):
    clip = vids.frames_for(6, 16, 16)
    f = T.hflip(clip)
    np.testing.assert_array_equal(f[:, :, ::-1], clip)
    assert np.all(f[:, :, -1, 1] == 255) and np.all(f[:, :, 0, 1] != 255)


def test_train_transform_flips_all_frames_or_none(vids):
    clip = vids.frames_for(8, 64, 64)
    tf = T.ClipTransform(size=32, resize=40, train=True)
    flipped = 0
    for s in range(20):
        out = tf(clip, np.random.default_rng(s))
        assert out.shape == (8, 32, 32, 3)
        green_right = out[:, :, -1, 1] > 200
        green_left = out[:, :, 0, 1] > 200
        per_frame = green_right.all(axis=1) & ~green_left.all(axis=1)
        assert per_frame.all() or not per_frame.any()  # consistent across frames
        flipped += bool(per_frame.all())
    assert 3 <= flipped <= 17


def test_eval_transform_equals_resize_then_crop():
    clip = _clip(h=120, w=160)
    fused = T.ClipTransform(size=56, resize=64)(clip)
    two_step = T.center_crop(T.resize_short_side(clip, 64), 56)
    assert fused.shape == two_step.shape == (4, 56, 56, 3)
    assert np.abs(fused.astype(int) - two_step).mean() < 1.0
    det = T.ClipTransform(size=56, resize=64)
    np.testing.assert_array_equal(det(clip), det(clip))
    with pytest.raises(ValueError, match="resize"):
        T.ClipTransform(size=112, resize=100)


def test_default_resize_matches_paper():
    assert T.ClipTransform(size=112).resize == 128


def test_geometry_maps_back_to_source():
    g = T.eval_geometry((120, 180), 64, 56)  # resized to 64 x 96, scale 8/15
    assert g.crop_box == (4, 20, 56, 56)
    assert g.source_box() == pytest.approx((7.5, 37.5, 112.5, 142.5))
    sy, sx = g.to_source(0, 0)
    assert (float(sy), float(sx)) == pytest.approx((7.5, 37.5))
    heat = np.zeros((7, 7))
    heat[0, 6] = 1.0  # top-right cell of the crop = source rows 7.5..22.5, cols 127.5..142.5
    up = g.uncrop(heat)
    assert up.shape == (120, 180) and up.dtype == np.float32
    peak = np.unravel_index(np.argmax(up), up.shape)
    assert 7 <= peak[0] <= 23 and 127 <= peak[1] <= 143
    assert up[:7].max() == 0 and up[:, 143:].max() == 0  # outside the crop: fill
    assert g.uncrop(np.ones((7, 7)), fill=-1)[60, 10] == -1
    assert g.uncrop(np.ones((7, 7))).sum() == pytest.approx(105 * 105, rel=0.03)
    # a marker drawn on the source lands where the geometry says in the eval crop
    src = np.zeros((1, 120, 180, 3), np.uint8)
    src[0, 60:70, 100:110] = 255
    crop = T.ClipTransform(size=56, resize=64)(src)[0, ..., 0]
    ys, xs = np.nonzero(crop > 127)
    cy, cx = g.to_source(ys.mean() + 0.5, xs.mean() + 0.5)
    assert float(cy) == pytest.approx(65, abs=1) and float(cx) == pytest.approx(105, abs=1)


def test_to_tensor_layout():
    clip = _clip()
    t = T.to_tensor(clip)
    assert t.dtype == torch.uint8 and t.shape == (3, 4, 60, 80)
    assert t[2, 1, 5, 7] == clip[1, 5, 7, 2]


def test_normalize_presets():
    x = torch.full((2, 3, 4, 5, 5), 255, dtype=torch.uint8)
    x[:, 1] = 0
    y = N.normalize(x, "imagenet")
    assert y.dtype == torch.float32 and y.shape == x.shape
    assert y[0, 0, 0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229, rel=1e-5)
    assert y[0, 1, 0, 0, 0].item() == pytest.approx(-0.456 / 0.224, rel=1e-5)
    k = N.normalize(x, "kinetics_255")
    assert k[0, 0, 0, 0, 0].item() == pytest.approx(255 - 110.63666788, rel=1e-5)
    a = N.normalize(x, "activitynet_255")
    assert a[0, 2, 0, 0, 0].item() == pytest.approx(255 - 99.4750, rel=1e-5)
    k01 = N.normalize(x, "kinetics_01")
    assert k01[0, 0, 0, 0, 0].item() == pytest.approx((1 - 0.4345) / 0.2768, rel=1e-5)
    assert N.normalize(x, "none")[0, 0].max().item() == 1.0
    d = N.normalize(x, "dataset", mean=(100.0, 50.0, 25.0))
    assert d[0, :, 0, 0, 0].tolist() == pytest.approx([155.0, -50.0, 230.0])
    frames = N.normalize(x[:, :, 0], "imagenet")  # (B, C, H, W) too
    assert frames.shape == (2, 3, 5, 5)
    with pytest.raises(ValueError, match="needs mean"):
        N.normalize(x, "dataset")
    with pytest.raises(ValueError, match="unknown normalisation preset"):
        N.normalize(x, "imagnet")
