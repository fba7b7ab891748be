"""Training batches through each worker's ring of shared-memory slots (issue 22): the
contents are right, slots are reused (no page faults per batch in the main process), a
slot is never refilled while the main process still holds its batch, and CPU
normalisation reuses its float buffers only when nothing else holds them."""

from __future__ import annotations

import resource

import numpy as np
import pytest
import torch

from momentlens.engine import batch_ring as R
from momentlens.engine.prefetch import DeviceInput, _BufferPool
from momentlens.models.registry import create_model

CLIP = (3, 4, 32, 32)  # 12 KiB a clip: a batch of 8 spans 24 pages


class _Items:
    """Item ``i``: a clip filled with ``i % 251``, label ``i % 3``, index ``i``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.full(CLIP, i % 251, dtype=torch.uint8), i % 3, i


def _loader(n: int, workers: int = 2, batch: int = 8, pin: bool = False):
    return torch.utils.data.DataLoader(
        _Items(n), batch_size=batch, num_workers=workers, persistent_workers=workers > 0,
        prefetch_factor=2 if workers else None, collate_fn=R.RingCollate(slots=4),
        pin_memory=pin)


def _check(clips: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> None:
    assert clips.shape == (len(indices), *CLIP) and clips.dtype == torch.uint8
    for clip, i in zip(clips, indices.tolist()):
        assert int(clip.min()) == int(clip.max()) == i % 251, f"item {i} was overwritten"
    assert labels.tolist() == [i % 3 for i in indices.tolist()]
    assert labels.dtype == indices.dtype == torch.int64


def test_ring_batches_are_right_and_reuse_their_slots():
    loader = _loader(8 * 12 + 5)  # 12 full batches and a partial one, per epoch
    R._MAPPED.clear()
    seen = []
    # This thread's faults only: another thread of pytest's process (a loader of an
    # earlier test being collected, say) must not count.
    who = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)
    for epoch in range(3):
        faults = resource.getrusage(who).ru_minflt
        for batch in loader:
            assert isinstance(batch, R.RingBatch)
            clips, labels, indices = batch
            _check(clips, labels, indices)
            seen.append(clips.untyped_storage().data_ptr())
        if epoch == 2:  # slots mapped in epochs 1-2 stay mapped: no faults reading them
            faults = resource.getrusage(who).ru_minflt - faults
            assert faults < 13 * 24 / 4, f"{faults} page faults in an epoch of 13 batches"
    # 2 workers x 4 slots, reused over 39 batches
    assert len(set(seen)) <= 8 and len(R._MAPPED) <= 8


def test_a_slot_is_not_refilled_while_its_batch_is_held():
    loader = _loader(8 * 20)
    kept = list(loader)  # the caller keeps every batch: workers fall back to new memory
    assert len(kept) == 20
    for clips, labels, indices in kept:
        _check(clips, labels, indices)
    flags = [R._flag_of(b.clips.untyped_storage(), b.flag_offset) for b in kept
             if isinstance(b, R.RingBatch)]
    assert flags and all(int(f) == 1 for f in flags)  # held: still marked in use
    del kept
    assert all(int(f) == 0 for f in flags)  # freed: released to the workers


def test_without_workers_the_default_collate_is_used():
    batches = list(_loader(10, workers=0, batch=4))
    assert not any(isinstance(b, R.RingBatch) for b in batches)
    for clips, labels, indices in batches:
        _check(clips, labels, indices)


def test_multi_hot_labels_travel_with_the_batch():
    class Multi(_Items):
        def __getitem__(self, i: int):
            clip, _, index = super().__getitem__(i)
            return clip, torch.tensor([i % 2, 1, 0], dtype=torch.float32), index

    loader = torch.utils.data.DataLoader(Multi(12), batch_size=4, num_workers=1,
                                         collate_fn=R.RingCollate(slots=3))
    for _clips, labels, indices in loader:
        assert labels.dtype == torch.float32 and labels.shape == (4, 3)
        assert labels[:, 0].tolist() == [i % 2 for i in indices.tolist()]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pinned_ring_batches_free_their_slots():
    R._MAPPED.clear()
    for _ in range(2):
        for clips, labels, indices in _loader(8 * 10, pin=True):
            assert clips.is_pinned()
            _check(clips, labels, indices)
    assert 0 < len(R._MAPPED) <= 8


def test_cpu_normalisation_reuses_only_free_buffers():
    pool = _BufferPool()
    fmt = torch.contiguous_format
    first = pool.take((2, 3), fmt)
    second = pool.take((2, 3), fmt)
    assert second.data_ptr() != first.data_ptr()  # ``first`` is still named
    kept = {first.data_ptr(), second.data_ptr()}
    del first
    again = pool.take((2, 3), fmt)  # ``first`` is free now: its memory, nothing new
    assert again.data_ptr() in kept and again.data_ptr() != second.data_ptr()
    view = again[1]  # only a view of it is kept
    del again
    other = pool.take((2, 3), fmt)
    assert other.data_ptr() != view.untyped_storage().data_ptr()
    assert other.data_ptr() != second.data_ptr()  # named, so a third buffer
    del view, other
    assert pool.take((2, 3), fmt).data_ptr() != second.data_ptr()
    assert len(pool.buffers) <= _BufferPool.KEEP


def test_a_batch_in_an_autograd_graph_is_not_overwritten():
    model = create_model("r3d10", num_classes=3, width=0.125, frames=4, size=32)
    prepare = DeviceInput(model.input_spec, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 256, (2, 3, 4, 32, 32), dtype=torch.uint8, generator=g)
               for _ in range(4)]
    losses, inputs = [], []
    for clips in batches:
        x, _ = prepare(clips, torch.tensor([0, 1]), torch.tensor([0, 1]))
        losses.append(model(x).sum())  # the graph keeps x for the backward pass
        inputs.append(x.data_ptr())
        del x
    assert len(set(inputs)) == 4  # every graph's input has memory of its own
    torch.stack(losses).sum().backward()
    del losses
    x, _ = prepare(batches[0], torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert x.data_ptr() in inputs  # graphs freed: a kept buffer is used again
    assert torch.equal(x, model.input_spec.normalize(batches[0]))


def test_ring_batch_indexes_like_a_tuple():
    clips = torch.zeros((1, *CLIP), dtype=torch.uint8)
    batch = R.RingBatch(clips, np.array([2]), np.array([7]), 0)
    assert len(batch) == 3 and batch[0] is clips
    assert batch[1].tolist() == [2] and batch[2].tolist() == [7]


def test_a_closed_feed_unmaps_its_slots():
    from momentlens.engine.distributed import DistInfo, EpochSampler
    from momentlens.engine.feed import TrainFeed

    class Keyed(_Items):
        epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

    R._MAPPED.clear()
    items = Keyed(8 * 6)
    sampler = EpochSampler(len(items), 8, DistInfo(), seed=0)
    with TrainFeed(items, sampler, 2, torch.device("cpu")) as feed:
        for epoch in range(2):
            for clips, labels, indices in feed.epoch(epoch):
                _check(clips, labels, indices)
        ring = feed._loader.collate_fn.ring
        assert any(key[0] == ring for key in R._MAPPED)
    assert not any(key[0] == ring for key in R._MAPPED)  # closed: nothing kept mapped


_SMALL_SHM = """
import torch
from momentlens.engine import batch_ring as R

class Items(torch.utils.data.Dataset):  # 256 KB clips: a batch of 4 is 1 MB
    def __len__(self): return 120
    def __getitem__(self, i): return torch.full((262144,), i % 251, dtype=torch.uint8), 0, i

loader = torch.utils.data.DataLoader(Items(), batch_size=4, num_workers=2,
                                     collate_fn=R.RingCollate(slots=6))
seen = 0
for clips, labels, indices in loader:
    assert (clips[:, 0] == indices % 251).all() and (clips[:, -1] == indices % 251).all()
    seen += len(indices)
print("seen", seen)
"""


def test_a_small_shared_memory_stops_the_ring_growing(tmp_path):
    """Two workers of six 1 MB slots would need 12 MB; under a 6 MB /dev/shm (a
    container's, say) the ring keeps the slots it could make and training goes on."""
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to give the child its own small /dev/shm")
    script = tmp_path / "small_shm.py"
    script.write_text(_SMALL_SHM)
    mount = ["unshare", "-m", "sh", "-c",
             'mount -t tmpfs -o size=6M tmpfs /dev/shm && exec "$0" "$1"',
             sys.executable, str(script)]
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no permission to make a mount namespace (needs root)")
    done = subprocess.run(mount, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "seen 120" in done.stdout


def test_a_loader_kills_a_worker_that_does_not_stop():
    # A worker busy (here: stuck) when the loader shuts down: torch waits a few seconds,
    # then sends SIGTERM, which loader workers ignore; the loader must kill it, or
    # Python's exit would join that daemonic worker forever (a run that never exits).
    import time

    from momentlens.engine.distributed import DistInfo, EpochSampler
    from momentlens.engine.feed import TrainFeed
    from momentlens.engine.inference import make_loader

    class Stuck(_Items):
        epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __getitem__(self, i: int):
            if i >= 8:
                time.sleep(120)  # every batch after the first hangs
            return super().__getitem__(i)

    items = Stuck(8 * 4)
    loader = make_loader(items, 8, 1, torch.utils.data.SequentialSampler(items),
                         torch.device("cpu"))
    batches = iter(loader)
    next(batches)  # the first batch; the worker is now stuck in the second
    workers = list(batches._workers)
    t0 = time.monotonic()
    del batches  # as when an evaluation's loop ends early: torch shuts the workers down
    assert time.monotonic() - t0 < 60
    assert workers and not any(w.is_alive() for w in workers)

    # the training feed's persistent workers, closed at the end of a run
    feed = TrainFeed(items, EpochSampler(len(items), 8, DistInfo(), seed=0, shuffle=False),
                     1, torch.device("cpu"))
    batches = iter(feed.epoch(0))
    next(batches)
    workers = list(feed._loader._iterator._workers)
    feed.close()
    assert workers and not any(w.is_alive() for w in workers)


def test_a_script_whose_loop_fails_still_exits():
    # An exception escaping a loop over a loader keeps the iterator (and its workers)
    # alive in the traceback Python keeps for its exit; multiprocessing's exit hook then
    # sent SIGTERM, which loader workers ignore, and joined them forever.
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import torch
        from momentlens.engine.inference import make_loader

        class Data:
            def __len__(self):
                return 64
            def __getitem__(self, i):
                if i == 20:
                    raise ValueError("item 20 is bad")
                return torch.zeros(4)

        data = Data()
        for batch in make_loader(data, 4, 2, torch.utils.data.SequentialSampler(data),
                                 torch.device("cpu")):
            pass
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError("the process hung at exit") from None
    assert proc.returncode == 1 and "item 20 is bad" in err, err
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("loader workers outlived the script")


def test_scoring_with_workers_loads_each_item_once(tmp_path):
    # score_dataset's progress bar once made a second DataLoader iterator (tqdm.auto
    # calls iter() when the bar is made, and again when it is looped over): a second set
    # of workers started and the first decoded prefetched batches that nobody read.
    import os

    from momentlens.engine.inference import Normalizer, score_dataset
    from momentlens.models.registry import create_model

    log = tmp_path / "loads"

    class Logged:
        def __len__(self) -> int:
            return 24

        def __getitem__(self, i: int):
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, f"{i}\n".encode())
            os.close(fd)
            return torch.full((3, 4, 32, 32), i, dtype=torch.uint8), i % 3, i

    model = create_model("r3d10", num_classes=3, width=0.0625, frames=4, size=32)
    scores = score_dataset(model, Logged(), torch.device("cpu"), Normalizer(model.input_spec),
                           batch_size=4, workers=2)
    assert scores.indices.tolist() == list(range(24))
    assert sorted(int(x) for x in log.read_text().split()) == list(range(24))
