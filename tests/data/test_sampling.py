"""Temporal samplers: indices in range, counts, determinism, short videos."""

from __future__ import annotations

import numpy as np
import pytest

from momentlens.data.sampling import (
    clip_indices,
    multi_clip_indices,
    multi_segment_indices,
    segment_indices,
)

LENGTHS = [1, 3, 4, 15, 16, 17, 90, 301]


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("train", [False, True])
def test_segments_in_range_and_ordered(n, train):
    rng = np.random.default_rng(0)
    for _ in range(20):
        idx = segment_indices(n, 4, train, rng)
        assert idx.shape == (4,) and idx.dtype == np.int64
        assert idx.min() >= 0 and idx.max() < n and np.all(np.diff(idx) >= 0)


def test_segments_one_per_segment():
    rng = np.random.default_rng(1)
    for _ in range(50):
        idx = segment_indices(90, 4, True, rng)
        lo, hi = np.floor(np.arange(4) * 22.5), np.arange(1, 5) * 22.5
        assert np.all((idx >= lo) & (idx < hi))  # each inside its own segment
    np.testing.assert_array_equal(segment_indices(90, 4), [11, 33, 56, 78])  # centres
    np.testing.assert_array_equal(segment_indices(2, 4), [0, 0, 1, 1])  # short: repeat


def test_segment_training_is_random_and_seeded():
    a = segment_indices(90, 4, True, np.random.default_rng(7))
    b = segment_indices(90, 4, True, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    draws = {tuple(segment_indices(90, 4, True, np.random.default_rng(s))) for s in range(20)}
    assert len(draws) > 10


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("stride", [1, 2])
def test_clip_in_range_and_counts(n, stride):
    rng = np.random.default_rng(0)
    for train in (False, True):
        idx = clip_indices(n, 16, stride, train, rng)
        assert idx.shape == (16,) and idx.min() >= 0 and idx.max() < n
        if (16 - 1) * stride + 1 <= n:
            assert np.all(np.diff(idx) == stride)


def test_clip_centre_and_random_start():
    np.testing.assert_array_equal(clip_indices(90, 16), np.arange(37, 53))
    starts = {int(clip_indices(90, 16, 1, True, np.random.default_rng(s))[0]) for s in range(200)}
    assert min(starts) >= 0 and max(starts) <= 74 and len(starts) > 40
    a = clip_indices(90, 16, 2, True, np.random.default_rng(3))
    np.testing.assert_array_equal(a, clip_indices(90, 16, 2, True, np.random.default_rng(3)))


def test_short_clip_loops():
    np.testing.assert_array_equal(clip_indices(5, 8), [0, 1, 2, 3, 4, 0, 1, 2])
    np.testing.assert_array_equal(clip_indices(5, 4, stride=2), [0, 2, 4, 0])
    np.testing.assert_array_equal(clip_indices(1, 3, train=True), [0, 0, 0])


def test_multi_clip_spread():
    clips = multi_clip_indices(90, 16, 1, 3)
    assert [int(c[0]) for c in clips] == [0, 37, 74]
    assert all(c.shape == (16,) for c in clips)
    assert len(multi_clip_indices(5, 8, 1, 4)) == 4
    np.testing.assert_array_equal(multi_clip_indices(90, 16, 1, 1)[0], clip_indices(90, 16))


def test_multi_segment_views():
    views = multi_segment_indices(80, 4, 2)
    np.testing.assert_array_equal(views[0], [5, 25, 45, 65])
    np.testing.assert_array_equal(views[1], [15, 35, 55, 75])


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least one frame"):
        clip_indices(0, 16)
    with pytest.raises(ValueError, match="stride"):
        clip_indices(10, 4, stride=0)
    with pytest.raises(ValueError, match="k must be"):
        segment_indices(10, 0)
