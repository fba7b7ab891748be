"""The training loop's parts (issue 22): device-side crop/flip/normalisation, the epoch
keys that let loader workers persist across epochs, each process's share of workers,
the device-side meters and their NaN check, and the prefetcher's CPU path."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

from momentlens.data.device_transforms import crop_flip, crop_flip_params
from momentlens.data.layout import load_split
from momentlens.data.normalize import NORM_PRESETS, normalize, normalize_affine
from momentlens.engine import factory as Fa
from momentlens.engine import loop as L
from momentlens.engine.checkpoint import TrainState
from momentlens.engine.config import load_config
from momentlens.engine.distributed import DistInfo, EpochSampler
from momentlens.engine.feed import TrainFeed, device_augment_dataset, loader_workers
from momentlens.engine.inference import Normalizer
from momentlens.engine.prefetch import DeviceAugment, DeviceInput, Prefetcher
from momentlens.engine.signals import StopRequest


def test_crop_flip_is_per_item_slicing_and_mirroring():
    g = torch.Generator().manual_seed(0)
    batch = torch.randint(0, 256, (5, 3, 4, 10, 13), dtype=torch.uint8, generator=g)
    params = torch.from_numpy(crop_flip_params(3, 2, [7, 1, 9, 4, 0], (10, 13), 6))
    out = crop_flip(batch, params, 6)
    assert out.shape == (5, 3, 4, 6, 6) and out.dtype == torch.uint8 and out.is_contiguous()
    for b, (y0, x0, flip) in enumerate(params.tolist()):
        ref = batch[b, :, :, y0:y0 + 6, x0:x0 + 6]
        assert torch.equal(out[b], ref.flip(-1) if flip else ref)


def test_crop_flip_draws_depend_on_seed_epoch_and_index_only():
    a = crop_flip_params(0, 1, [3, 5, 8], (16, 20), 12)
    b = crop_flip_params(0, 1, [8, 3], (16, 20), 12)  # another batch, other neighbours
    assert a[2].tolist() == b[0].tolist() and a[0].tolist() == b[1].tolist()
    assert not np.array_equal(crop_flip_params(0, 2, [3, 5, 8], (16, 20), 12), a)
    assert not np.array_equal(crop_flip_params(1, 1, [3, 5, 8], (16, 20), 12), a)
    many = crop_flip_params(0, 0, np.arange(4000), (16, 20), 12)
    assert many[:, 0].min() == 0 and many[:, 0].max() == 4 and many[:, 1].max() == 8
    assert 0.45 < many[:, 2].mean() < 0.55  # flip_p = 0.5
    centre = crop_flip_params(0, 0, [1, 2], (16, 20), 12, random_crop=False, flip_p=0.0)
    assert centre.tolist() == [[2, 4, 0], [2, 4, 0]]


@pytest.mark.parametrize("preset", [p for p in NORM_PRESETS if p != "dataset"])
def test_cached_normalisation_is_bit_identical_to_normalize(preset):
    x = torch.randint(0, 256, (2, 3, 3, 5, 5), dtype=torch.uint8)
    a, b = normalize_affine(preset)
    assert torch.equal(x.float() * a - b, normalize(x, preset))


@pytest.mark.parametrize("preset", list(NORM_PRESETS))
def test_device_input_matches_the_normalizer(synth_dir, eng, preset):
    # Every preset: the *_255 ones scale by 1 and take the path without the multiply.
    cfg = load_config(None, {**eng.TINY, "data": str(synth_dir)})
    spec = Fa.input_spec(cfg, Fa.build_model(cfg, 3))
    spec = dataclasses.replace(spec, norm=preset,
                               mean=(120.5, 99.25, 87.0) if preset == "dataset" else None,
                               std=None)
    prepare = DeviceInput(spec, torch.device("cpu"))
    preset_spec = NORM_PRESETS[preset]
    assert prepare.unit_scale == (preset_spec.value_scale == 255
                                  and all(s == 1 for s in preset_spec.std))
    x = torch.randint(0, 256, (2, 3, 4, 32, 32), dtype=torch.uint8)
    for channels_last in (False, True):
        got, y = DeviceInput(spec, torch.device("cpu"), channels_last)(x, torch.tensor([1, 2]),
                                                                       torch.tensor([0, 1]))
        want = Normalizer(spec, channels_last)(x)
        assert torch.equal(got, want) and got.stride() == want.stride()
        assert y.tolist() == [1, 2]


class _Draws:
    """Items whose content is the draw of their (seed, epoch, index) generator, and the
    worker process that made them."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        draw = np.random.default_rng((0, self.epoch, i)).integers(1 << 30)
        return torch.tensor([draw, self.epoch, os.getpid()]), 0, i


def test_persistent_workers_see_every_epoch_and_resume_mid_epoch():
    ds = _Draws(12)
    sampler = EpochSampler(len(ds), 2, DistInfo(), seed=5)
    with TrainFeed(ds, sampler, 2, torch.device("cpu"), persistent=True) as feed:
        seen = {}
        for epoch, start in ((0, 0), (1, 0), (2, 2)):
            batches = list(feed.epoch(epoch, start_batch=start))
            order = [i for _, _, idx in batches for i in idx.tolist()]
            expected = EpochSampler(len(ds), 2, DistInfo(), seed=5)
            expected.set_epoch(epoch, start_batch=start)
            assert order == list(expected)
            items = torch.cat([x for x, _, _ in batches])
            for (draw, ep, _), i in zip(items.tolist(), order):
                assert ep == epoch
                assert draw == np.random.default_rng((0, epoch, i)).integers(1 << 30)
            seen[epoch] = {pid for _, _, pid in items.tolist()}
        assert seen[0] == seen[1] == seen[2] and os.getpid() not in seen[0]  # the same workers
        assert len(seen[0]) == 2
        workers = feed._loader._iterator._workers
    assert not any(w.is_alive() for w in workers), "close() leaves no worker behind"


@pytest.mark.parametrize("workers,cores,procs,expected", [
    (8, 2, 2, 1), (2, 2, 1, 2), (4, 2, 1, 2), (3, 16, 2, 3), (15, 16, 2, 8), (2, 1, 2, 0)])
def test_each_process_gets_its_share_of_the_cores(workers, cores, procs, expected):
    got = loader_workers(workers, DistInfo(0, procs), cores=cores, local_processes=procs)
    assert got == expected and got * procs <= cores


def test_device_augment_dataset_leaves_crop_and_flip_to_the_device(synth_dir, eng):
    cfg = load_config(None, {**eng.TINY, "data": str(synth_dir), "resize": 40})
    spec = Fa.input_spec(cfg, Fa.build_model(cfg, 3))
    ds = Fa.make_dataset(cfg, spec, load_split(synth_dir, "training"), True, None)
    assert device_augment_dataset(ds) == (True, 0.5)
    clip, _, _ = ds[3]
    assert clip.shape == (3, 4, 40, 40)  # decoded, sampled and resized only
    aug = DeviceAugment(0, 32)
    x, _ = DeviceInput(spec, torch.device("cpu"), augment=aug, epoch=1)(
        clip[None], torch.tensor([0]), torch.tensor([3]))
    assert x.shape == (1, 3, 4, 32, 32) and x.dtype == torch.float32


def _loop_parts(synth_dir, eng, **settings):
    cfg = load_config(None, {**eng.TINY, "data": str(synth_dir), **settings})
    torch.manual_seed(0)
    model = Fa.build_model(cfg, 3)
    spec = Fa.input_spec(cfg, model)
    ds = Fa.make_dataset(cfg, spec, load_split(synth_dir, "training"), True, None)
    optimizer = Fa.make_optimizer(cfg, list(model.parameters()))
    return cfg, model, ds, optimizer, Fa.make_scheduler(cfg, optimizer, 3), Normalizer(spec)


def test_loop_reads_the_device_once_per_epoch_and_stops_on_nan(synth_dir, eng, monkeypatch):
    cfg, model, ds, optimizer, scheduler, normalizer = _loop_parts(synth_dir, eng)
    reads = []
    original = L.Meter.read
    monkeypatch.setattr(L, "READ_EVERY_S", 1e9)
    monkeypatch.setattr(L.Meter, "read", lambda self, *a: reads.append(1) or original(self, *a))
    sampler = EpochSampler(len(ds), 4, DistInfo(), seed=0)
    with TrainFeed(ds, sampler, 0, torch.device("cpu")) as feed:
        state = TrainState()
        stats = L.train_one_epoch(model, feed.epoch(0), optimizer, scheduler, state, cfg,
                                  torch.device("cpu"), normalizer, None, DistInfo(),
                                  StopRequest(), lambda: None)
        assert len(reads) == 1 and state.step == 3 and np.isfinite(stats["train_loss"])
        assert state.epoch_sums["seen"] == 12 and state.epoch_sums["loss_sum"] > 0
        for group in optimizer.param_groups:
            group["lr"] = 1e38  # the weights overflow, the next losses are not finite
        state = TrainState(epoch=1)
        with pytest.raises(L.TrainingDiverged, match=r"the loss became (nan|inf) at step \d"):
            L.train_one_epoch(model, feed.epoch(1), optimizer, scheduler, state, cfg,
                              torch.device("cpu"), normalizer, None, DistInfo(),
                              StopRequest(), lambda: None)


def test_prefetcher_on_cpu_is_a_plain_loop():
    batches = [(torch.full((1, 3, 1, 2, 2), i, dtype=torch.uint8), torch.tensor([i]),
                torch.tensor([i])) for i in range(4)]
    calls = []

    def prepare(*batch):
        calls.append(int(batch[1]))
        return batch[0].float(), batch[1]

    fetch = Prefetcher(batches, prepare, torch.device("cpu"))
    assert fetch.stream is None and len(fetch) == 4
    for n, (x, y) in enumerate(fetch):
        assert calls == list(range(n + 1))  # nothing taken ahead on the CPU
        assert int(y) == n and x.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_prefetcher_gives_what_the_cpu_path_gives(synth_dir, eng):
    cfg = load_config(None, {**eng.TINY, "data": str(synth_dir)})
    spec = Fa.input_spec(cfg, Fa.build_model(cfg, 3))
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 256, (2, 3, 4, 40, 40), dtype=torch.uint8, generator=g)
                .pin_memory(), torch.tensor([i, 1]), torch.tensor([2 * i, 2 * i + 1]))
               for i in range(5)]
    aug = DeviceAugment(0, 32)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    on_gpu = list(Prefetcher(batches, DeviceInput(spec, cuda, True, aug, 3), cuda))
    on_cpu = list(Prefetcher(batches, DeviceInput(spec, cpu, True, aug, 3), cpu))
    assert len(on_gpu) == len(on_cpu) == 5
    for (xg, yg), (xc, yc) in zip(on_gpu, on_cpu):
        torch.testing.assert_close(xg.cpu(), xc, rtol=0, atol=1e-6)
        assert torch.equal(yg.cpu(), yc)
