"""VideoDataset: shapes, determinism per (seed, epoch, index), failures, 2 workers."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from momentlens.data.dataset import VideoDataset
from momentlens.data.layout import load_split


@pytest.fixture
def split(tmp_path, vids):
    root = vids.write_mit(tmp_path / "mit", per_class=2, n=20)
    shutil.copy(root / "training" / "jumping" / "tra_0.mp4", root / "x.mp4")
    (root / "training" / "running" / "tra_1.mp4").write_text("not a video")
    return load_split(root, "training", missing="keep")


def _ds(split, tmp_path, **kw):
    kw.setdefault("quarantine_path", tmp_path / "run" / "quarantine.jsonl")
    return VideoDataset(split.records, num_classes=len(split.classes), size=24, resize=28, **kw)


def test_clip_item_shape_and_content(split, tmp_path, vids):
    ds = _ds(split, tmp_path, sampler="clip", frames=8)
    clip, label, index = ds[0]
    assert clip.dtype == torch.uint8 and clip.shape == (3, 8, 24, 24)
    assert (label, index) == (0, 0) and len(ds) == 6
    ids = [vids.frame_id(f) for f in clip.permute(1, 2, 3, 0).numpy()]
    assert ids == list(range(6, 14))  # centred 8 of 20


def test_segments_and_multi_clip(split, tmp_path, vids):
    seg = _ds(split, tmp_path, sampler="segments", frames=4)
    clip = seg[1][0]
    assert clip.shape == (3, 4, 24, 24)
    assert [vids.frame_id(f) for f in clip.permute(1, 2, 3, 0).numpy()] == [2, 7, 12, 17]
    multi = _ds(split, tmp_path, sampler="clip", frames=8, num_clips=3)
    clips = multi[2][0]
    assert clips.shape == (3, 3, 8, 24, 24)
    starts = [vids.frame_id(c[:, 0].permute(1, 2, 0).numpy()) for c in clips]
    assert starts == [0, 6, 12]


def test_training_is_deterministic_per_seed_epoch_index(split, tmp_path):
    a = _ds(split, tmp_path, train=True, frames=4, seed=1)
    b = _ds(split, tmp_path, train=True, frames=4, seed=1)
    torch.testing.assert_close(a[3][0], b[3][0])
    draws = set()
    for epoch in range(6):
        a.set_epoch(epoch)
        draws.add(a[3][0].numpy().tobytes())
    assert len(draws) > 1


def test_unreadable_video_quarantined_not_fatal(split, tmp_path, caplog):
    ds = _ds(split, tmp_path, frames=4)
    bad = 5
    clip, label, index = ds[bad]
    assert clip.shape == (3, 4, 24, 24) and int(clip.sum()) == 0
    assert (label, index) == (2, bad)
    ds[bad]
    assert caplog.text.count("unreadable video") == 1  # logged once
    lines = [json.loads(x) for x in ds.quarantine_path.read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["index"] == bad and "tra_1.mp4" in lines[0]["reason"]
    assert ds.failed_indices() == {bad} and "1 of 6 videos unreadable" in ds.failure_report()
    again = _ds(split, tmp_path, frames=4)  # a later run skips known-bad videos at once
    assert int(again[bad][0].sum()) == 0 and again.failed_indices() == {bad}


def test_missing_file_kept_is_quarantined(split, tmp_path):
    split.records[0].path.unlink()
    ds = _ds(split, tmp_path, frames=4)
    assert int(ds[0][0].sum()) == 0 and 0 in ds.failed_indices()


def test_two_workers(split, tmp_path):
    ds = _ds(split, tmp_path, train=True, frames=4, seed=3)
    ds.set_epoch(2)
    loader = DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
    batches = list(loader)
    clips = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    index = torch.cat([b[2] for b in batches])
    assert clips.shape == (6, 3, 4, 24, 24) and index.tolist() == list(range(6))
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    # same result as the main process for the same epoch, whatever the worker
    torch.testing.assert_close(clips[1], ds[1][0])
    # the failure inside a worker is visible to the main process
    assert ds.failed_indices(epoch=2) == {5}
    assert not np.any(clips[5].numpy())


def test_private_quarantine_file_lives_as_long_as_the_dataset(split):
    import gc

    ds = VideoDataset(split.records, num_classes=len(split.classes), frames=4, size=32)
    path = ds.quarantine_path
    # Loader workers hold copies of the dataset; their ending must not remove the file.
    for _ in DataLoader(ds, batch_size=2, num_workers=2):
        pass
    assert path.exists()
    del ds
    gc.collect()
    assert not path.exists()


@pytest.fixture
def full_disk(tmp_path, disks):
    """A real 64 KiB tmpfs, filled to the last byte (root only: mount)."""
    where = disks.mount(tmp_path / "disk", "64k")
    (where / "run").mkdir()
    disks.fill(where)
    return where


def test_a_full_disk_loses_the_quarantine_record_not_the_run(split, tmp_path, full_disk,
                                                             caplog):
    # The run folder's disk is full when a loader worker meets an unreadable video: the
    # quarantine line cannot be written, but the batch still comes, with a zero clip.
    ds = _ds(split, tmp_path, frames=4, quarantine_path=full_disk / "run" / "q.jsonl")
    from momentlens.engine.inference import make_loader

    loader = make_loader(ds, 2, 2, torch.utils.data.SequentialSampler(ds), torch.device("cpu"))
    batches = list(loader)
    clips = torch.cat([b[0] for b in batches])
    assert clips.shape == (6, 3, 4, 24, 24) and not clips[5].any() and clips[4].any()
    ds[5]  # in this process too, where the warning is caught
    assert "cannot record unreadable videos" in caplog.text
    assert "No space left on device" in caplog.text
    assert ds.failed == {5}
