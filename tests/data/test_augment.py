"""Colour augmentations: colour jitter and random grey-scale, and their wiring into VideoDataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from momentlens.data import transforms as T
from momentlens.data.dataset import VideoDataset
from momentlens.data.encode import write_video
from momentlens.data.layout import VideoRecord

LUMA = np.array([0.299, 0.587, 0.114])


def _clip(seed: int = 0, t: int = 4, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(30, 226, size=(t, size, size, 3), dtype=np.uint8)


def _reference(clip: np.ndarray, b: float, c: float, s: float) -> np.ndarray:
    """Brightness, contrast, saturation step by step (float, no clamping in between)."""
    x = clip.astype(np.float64) * b
    mean = (x.reshape(-1, 3).mean(axis=0) @ LUMA)
    x = c * x + (1 - c) * mean
    grey = (x @ LUMA)[..., None]
    return s * x + (1 - s) * grey


def test_identity_parameters_change_nothing():
    clip = _clip()
    m, off = T.colour_jitter_matrix(1.0, 1.0, 1.0, 0.0, 123.0)
    np.testing.assert_allclose(m, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(off, 0, atol=1e-9)
    out = T.colour_jitter(clip, np.random.default_rng(0), 0, 0, 0, 0)
    np.testing.assert_array_equal(out, clip)


def test_matrix_matches_step_by_step_reference():
    clip = _clip(1)
    b, c, s = 1.3, 0.6, 1.4
    mean = float(clip.reshape(-1, 3).mean(axis=0) @ LUMA) * b
    m, off = T.colour_jitter_matrix(b, c, s, 0.0, mean)
    got = clip.astype(np.float64) @ m.T + off
    np.testing.assert_allclose(got, _reference(clip, b, c, s), atol=1e-6)


def test_hue_rotation_keeps_grey_and_luma_and_turns_colours():
    m, off = T.colour_jitter_matrix(1.0, 1.0, 1.0, 0.25, 100.0)
    grey = np.array([90.0, 90.0, 90.0])
    np.testing.assert_allclose(m @ grey + off, grey, atol=1e-6)
    red = np.array([200.0, 40.0, 40.0])
    turned = m @ red + off
    assert abs(turned @ LUMA - red @ LUMA) < 1e-6  # luma unchanged
    assert turned.argmax() != 0  # no longer red
    full, _ = T.colour_jitter_matrix(1.0, 1.0, 1.0, 1.0, 0.0)  # one whole turn
    np.testing.assert_allclose(full, np.eye(3), atol=1e-9)


def test_jitter_same_for_all_frames_and_deterministic():
    frame = _clip(2, t=1)[0]
    clip = np.stack([frame] * 5)
    out = T.colour_jitter(clip, np.random.default_rng(7), 0.5, 0.5, 0.5, 0.3)
    assert out.dtype == np.uint8 and out.shape == clip.shape
    for t in range(1, 5):
        np.testing.assert_array_equal(out[t], out[0])
    again = T.colour_jitter(clip, np.random.default_rng(7), 0.5, 0.5, 0.5, 0.3)
    np.testing.assert_array_equal(out, again)
    other = T.colour_jitter(clip, np.random.default_rng(8), 0.5, 0.5, 0.5, 0.3)
    assert not np.array_equal(out, other)
    with pytest.raises(ValueError):
        T.colour_jitter(clip, np.random.default_rng(0), hue=0.7)


def test_jitter_spreads_colours_over_draws():
    clip = np.full((1, 4, 4, 3), (180, 60, 60), dtype=np.uint8)
    means = np.array([T.colour_jitter(clip, np.random.default_rng(i), 0.4, 0.4, 0.4, 0.5)
                      .reshape(-1, 3).mean(axis=0) for i in range(200)])
    assert means.std(axis=0).min() > 15  # every channel moves
    assert (means.argmax(axis=1) != 0).mean() > 0.3  # the hue often leaves red


def test_grayscale_and_random_grayscale():
    clip = _clip(3)
    g = T.grayscale(clip)
    assert g.shape == clip.shape and g.dtype == np.uint8
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    np.testing.assert_allclose(g[..., 0], clip.astype(float) @ LUMA, atol=0.51)
    hits = [not np.array_equal(T.random_grayscale(clip, np.random.default_rng(i), 0.3), clip)
            for i in range(400)]
    assert 0.22 < np.mean(hits) < 0.38
    np.testing.assert_array_equal(T.random_grayscale(clip, np.random.default_rng(0), 0.0), clip)
    np.testing.assert_array_equal(T.random_grayscale(clip, np.random.default_rng(0), 1.0), g)


def test_colour_augment_off_draws_nothing():
    clip = _clip(4)
    rng = np.random.default_rng(5)
    out = T.colour_augment(clip, rng, 0.0, 0.0)
    np.testing.assert_array_equal(out, clip)
    assert rng.random() == np.random.default_rng(5).random()


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("aug") / "v.mp4"
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 256, size=(1, 32, 32, 3), dtype=np.uint8), 12, axis=0)
    write_video(path, frames, fps=30)
    return path


def _ds(path: Path, train: bool, **kw) -> VideoDataset:  # noqa: ANN003
    rec = VideoRecord(path=path, label=0)
    return VideoDataset([rec] * 3, num_classes=1, sampler="clip", frames=4, train=train,
                        size=24, resize=28, seed=3, flip_p=0.0, **kw)


def test_dataset_colour_augmentation_training_only_and_deterministic(video: Path):
    plain = _ds(video, True)
    aug = _ds(video, True, colour_jitter=0.5, grayscale_p=1.0)
    a, b = plain[0][0].numpy(), aug[0][0].numpy()  # (C, T, H, W)
    assert not np.array_equal(a, b)
    assert (b[0] == b[1]).all() and (b[1] == b[2]).all()  # grey-scale, always
    np.testing.assert_array_equal(b, _ds(video, True, colour_jitter=0.5, grayscale_p=1.0)[0][0])
    aug.set_epoch(1)
    assert not np.array_equal(b, aug[0][0].numpy())  # a new draw per epoch
    ev = _ds(video, False, colour_jitter=0.5, grayscale_p=1.0)
    np.testing.assert_array_equal(ev[0][0].numpy(), _ds(video, False)[0][0].numpy())
    with pytest.raises(ValueError):
        _ds(video, True, grayscale_p=1.5)
