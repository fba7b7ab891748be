"""Several processes: the epoch sampler's shards, and real 2-process DDP over gloo on CPU
(processes started with the variables torchrun sets, joined by ``distributed.setup``)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from momentlens.data.layout import load_split
from momentlens.engine.distributed import DistInfo, EpochSampler, launch_rank, launched
from momentlens.models.registry import create_model
from momentlens.utils import MomentlensError


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("length,batch", [(12, 2), (13, 2), (10, 3), (5, 1)])
def test_epoch_sampler_shards_are_disjoint_and_cover_the_truncated_permutation(
        world, length, batch):
    shards = [list(EpochSampler(length, batch, DistInfo(r, world), seed=3)) for r in range(world)]
    per_global = batch * world
    kept = length // per_global * per_global
    assert all(len(s) == kept // world for s in shards)  # the same number of steps everywhere
    union = [i for s in shards for i in s]
    assert len(set(union)) == len(union) == kept  # disjoint
    g = torch.Generator().manual_seed(3 * 1_000_003 + 0)
    assert sorted(union) == sorted(torch.randperm(length, generator=g)[:kept].tolist())
    # Global batch b is the b-th run of `per_global` items of the permutation, rank r its r-th part.
    for b in range(kept // per_global):
        together = [i for s in shards for i in s[b * batch:(b + 1) * batch]]
        assert together == torch.randperm(length, generator=g.manual_seed(3_000_009)
                                          )[b * per_global:(b + 1) * per_global].tolist()
    # Starting part-way into the epoch skips exactly the batches already done.
    for r in range(world):
        late = EpochSampler(length, batch, DistInfo(r, world), seed=3)
        late.set_epoch(0, start_batch=1)
        assert list(late) == shards[r][batch:] and len(late) == len(shards[r][batch:])
    # The same epoch, the same order; another epoch, another one.
    assert list(EpochSampler(length, batch, DistInfo(0, world), seed=3)) == shards[0]
    later = []
    for r in range(world):
        sampler = EpochSampler(length, batch, DistInfo(r, world), seed=3)
        sampler.set_epoch(1)
        later += list(sampler)
    assert later != union


@pytest.mark.parametrize("world,max_batches", [(1, 0), (2, 0), (1, 3)])
def test_only_dropped_items_no_epoch_trained_on_are_probed(world, max_batches):
    # rank 0 decodes the probed items alone while every rank waits: an item an earlier
    # epoch trained on has been read by a loader already (and quarantined if bad)
    length, batch = 23, 4
    trained_ever: set[int] = set()
    probed = 0
    for epoch in range(6):
        sampler = EpochSampler(length, batch, DistInfo(0, world), seed=5,
                               max_batches=max_batches)
        sampler.set_epoch(epoch)
        expected = [i for i in sampler.dropped() if i not in trained_ever]
        assert sampler.never_trained_dropped() == expected
        probed += len(expected)
        for r in range(world):
            rank = EpochSampler(length, batch, DistInfo(r, world), seed=5,
                                max_batches=max_batches)
            rank.set_epoch(epoch)
            trained_ever |= set(rank)
    assert probed < 6 * len(sampler.dropped())  # fewer than every dropped item, each epoch


@pytest.mark.parametrize("length,world", [(5, 2), (6, 2), (7, 3), (1, 2)])
def test_eval_shards_see_every_item_exactly_once(length, world):
    shards = [list(EpochSampler(length, 2, DistInfo(r, world), shuffle=False))
              for r in range(world)]
    union = sorted(i for s in shards for i in s)
    assert union == list(range(length))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(worker: Path, world: int, args: list[str], timeout: float = 180) -> None:
    """Run ``world`` processes of ``worker`` with torchrun's variables; each must exit 0
    within ``timeout`` seconds (all are killed otherwise)."""
    port = str(_free_port())
    procs = []
    for rank in range(world):
        env = {"MOMENTLENS_QUIET": "1", "OMP_NUM_THREADS": "1"}
        if world > 1:
            env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                       LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        procs.append(subprocess.Popen(
            [sys.executable, str(worker), *args], env={**_base_env(), **env},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        for p in procs:
            _, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def _launch(data: Path, out: Path, world: int, *extra: str) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    _start(Path(__file__).with_name("ddp_worker.py"), world,
           ["--data", str(data), "--out", str(out), *extra])
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]


@pytest.mark.parametrize("signalled", [0, 1])
def test_a_signal_to_one_rank_stops_every_rank_after_the_same_step(tmp_path, signalled):
    # A real SIGTERM reaches one rank only; the flags meet in a gloo group of their own
    # (on the CPU, whatever the training backend), and both ranks stop at that step.
    _start(Path(__file__).with_name("stop_worker.py"), 2,
           ["--out", str(tmp_path), "--signalled", str(signalled), "--at", "3"])
    records = [json.loads((tmp_path / f"stop{r}.json").read_text()) for r in range(2)]
    assert [r["step"] for r in records] == [3, 3]
    assert [r["signal"] for r in records] == [int(signal.SIGTERM)] * 2
    assert [r["group"] for r in records] == ["gloo", "gloo"]


@pytest.mark.parametrize("signalled", [0, 1])
def test_a_signal_during_the_agreement_stops_every_rank_at_the_next_one(tmp_path, signalled):
    # The signal lands while the signalled rank waits in the agreement's reduction, its
    # flag already sent as 0. Every rank must answer from the reduced flag (go on) and
    # stop together at the next step; answering from the local flag stopped that rank
    # alone and left the other waiting in the next step's collective (a hang under
    # torchrun, seen in CI).
    _start(Path(__file__).with_name("stop_worker.py"), 2,
           ["--out", str(tmp_path), "--signalled", str(signalled), "--at", "3", "--during"],
           timeout=60)
    records = [json.loads((tmp_path / f"stop{r}.json").read_text()) for r in range(2)]
    assert [r["step"] for r in records] == [4, 4]
    assert [r["signal"] for r in records] == [int(signal.SIGTERM)] * 2


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items()
            if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}


@pytest.mark.parametrize("accum", [1, 2])  # 2: the first micro-batch runs under no_sync()
def test_ddp_step_and_validation_match_one_process(synth_dir, tmp_path, accum):
    args = ("--val-videos", "5", "--accum", str(accum))
    single, = _launch(synth_dir, tmp_path / "single", 1, *args)
    ranks = _launch(synth_dir, tmp_path / "ddp", 2, *args)

    # The two ranks trained on disjoint halves of the single process's batch ...
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    assert sorted(ranks[0]["batch"] + ranks[1]["batch"]) == sorted(single["batch"])
    assert not set(ranks[0]["batch"]) & set(ranks[1]["batch"])
    assert len(single["batch"]) == 4 * accum
    # ... and one step over gloo left every rank with the single-process weights.
    for key, expected in single["weights"].items():
        for r in ranks:
            torch.testing.assert_close(r["weights"][key], expected, rtol=0, atol=1e-6,
                                       msg=lambda m, key=key: f"{key}: {m}")
    params = dict(single["initial"])
    moved = [k for k, v in single["weights"].items() if not torch.equal(v, params[k])]
    assert "fc.weight" in moved and "conv1.weight" in moved  # the step changed the weights
    assert not [k for k in moved if "running_" in k]  # batch-norm statistics stayed frozen

    # Validation of 5 videos on 2 processes: 3 + 2 scored, every video exactly once,
    # with the scores of one process; every rank gets the complete result.
    assert sorted(ranks[0]["local"] + ranks[1]["local"]) == [0, 1, 2, 3, 4]
    assert len(ranks[0]["local"]) == 3 and len(ranks[1]["local"]) == 2
    for r in ranks:
        assert r["indices"].tolist() == [0, 1, 2, 3, 4]
        np.testing.assert_array_equal(r["labels"], single["labels"])
        np.testing.assert_allclose(r["clip_probs"], single["clip_probs"], rtol=0, atol=1e-5)


def test_every_rank_counts_the_unreadable_validation_videos_of_all(synth_dir, tmp_path):
    # Two machines without a shared run folder each see only their own quarantine file
    # (here: each process a private one). Validation video 1 is unreadable and scored by
    # rank 1; both ranks must leave it out and count it, or their val_top1 (and a plateau
    # schedule stepped on it) would differ between ranks.
    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    broken = load_split(data, "validation").records[1].path
    broken.write_bytes(b"not a video")
    ranks = _launch(data, tmp_path / "out", 2)
    rows = [r["validate"] for r in ranks]
    assert rows[0] == rows[1]
    assert rows[0]["val_unreadable"] == 1 and rows[0]["val_videos"] == 4


def test_torchrun_train_matches_one_process(synth_dir, tmp_path, eng):
    # The whole command under torchrun: 2 processes, gloo, rank 0 writes the run folder.
    # finetune=fc keeps every BatchNorm layer in eval mode, so one step on the global
    # batch must give the single-process weights.
    settings = {"finetune": "fc", "epochs": 1, "max_steps_per_epoch": 1, "lr": 0.5}
    single = eng.run_train(eng.train_args(synth_dir, tmp_path / "single", **settings))
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run(
        eng.torchrun_train(eng.train_args(synth_dir, tmp_path / "ddp", **settings)),
        env=eng.cli_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=180)
    assert ddp.returncode == 0, ddp.stderr
    run_dir = tmp_path / "ddp"
    assert len(list((run_dir / "tensorboard").glob("events.*"))) == 1  # rank 0 only
    assert eng.last_step(run_dir) == 1
    a, b = eng.weights(run_dir), eng.weights(tmp_path / "single")
    # Two half-batch gradients averaged over gloo sum in another order than one
    # full-batch gradient: at lr 0.5 that leaves up to a few 1e-6 (seen: 3.8e-6).
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=2e-5)
    torch.manual_seed(0)  # the runs' initial weights (seed 0): the step moved the head
    initial = create_model("r3d10", num_classes=3, width=0.125, frames=4, size=32)
    # ... by far more than that tolerance, so a wrong gradient average cannot pass.
    assert (a["fc.weight"] - initial.state_dict()["fc.weight"]).abs().max() > 1e-3
    assert torch.equal(a["conv1.weight"], initial.state_dict()["conv1.weight"])  # frozen
    row = json.loads((run_dir / "metrics.jsonl").read_text())
    ref = json.loads((tmp_path / "single" / "metrics.jsonl").read_text())
    assert row["val_videos"] == ref["val_videos"] == 6  # every video once, not 6 per rank
    assert row["val_top1"] == ref["val_top1"]
    assert abs(row["train_loss"] - ref["train_loss"]) < 1e-5


def test_rank_share_gives_each_rank_its_saved_sums():
    from momentlens.engine.distributed import rank_share

    saved = [{"seen": 4, "loss_sum": 2.0}, {"seen": 4, "loss_sum": 3.0}]
    assert rank_share(saved, DistInfo(1, 2, 1)) == {"seen": 4, "loss_sum": 3.0}
    assert rank_share(saved, DistInfo(0, 2, 0)) == {"seen": 4, "loss_sum": 2.0}
    # resumed on another number of processes: rank 0 carries the totals
    assert rank_share(saved, DistInfo()) == {"seen": 8, "loss_sum": 5.0}
    assert rank_share(saved, DistInfo(2, 3, 2)) == {}
    # a single process's checkpoint: one dict
    assert rank_share({"seen": 4}, DistInfo()) == {"seen": 4}
    assert rank_share({"seen": 4}, DistInfo(1, 2, 1)) == {}


def test_an_epoch_resumed_on_more_processes_pools_its_metrics(synth_dir, tmp_path, eng):
    # Stopped after step 1 of 3 in one process, the epoch ends under torchrun on 2: rank
    # 0 carries the first step's sums, so the ranks have seen 8 and 4 clips. The epoch's
    # loss and accuracy are those of its 12 clips, as the uninterrupted run's are, not a
    # mean of the two ranks' means.
    import os
    import signal

    settings = {"finetune": "fc", "epochs": 1, "lr": 0.05, "checkpoint_steps": 1}
    single = eng.run_train(eng.train_args(synth_dir, tmp_path / "single", **settings))
    assert single.returncode == 0, single.stderr
    run_dir = tmp_path / "moved"
    proc = eng.start_train(eng.train_args(synth_dir, run_dir, **settings),
                           checkpoint_delay=0.5, new_session=True)
    eng.wait_for(proc, lambda: eng.last_step(run_dir) >= 1, "step 1")
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and eng.last_step(run_dir) < 3, err
    done = subprocess.run(eng.torchrun_train(["--resume", str(run_dir)]),
                          env=eng.cli_env(OMP_NUM_THREADS="1"), capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    row = json.loads((run_dir / "metrics.jsonl").read_text())
    ref = json.loads((tmp_path / "single" / "metrics.jsonl").read_text())
    assert abs(row["train_loss"] - ref["train_loss"]) < 1e-5, (row, ref)
    assert row["train_top1"] == ref["train_top1"]


@pytest.mark.parametrize("env, expect", [
    ({}, DistInfo()),
    ({"WORLD_SIZE": "1", "RANK": "0"}, DistInfo()),
    ({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}, DistInfo(3, 4, 1)),
    ({"WORLD_SIZE": "2", "RANK": "1"}, DistInfo(1, 2, 0)),
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK is not"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 is outside WORLD_SIZE=2"),
    ({"WORLD_SIZE": "two", "RANK": "0"}, "WORLD_SIZE='two' is not a whole number"),
    ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": ""}, "LOCAL_RANK='' is not"),
])
def test_the_torchrun_environment_is_read_in_one_place(monkeypatch, env, expect):
    # One reader for train, evaluate, predict and cam; a half-set environment is named
    # (it used to be a KeyError: 'RANK' from the training entry point).
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if isinstance(expect, str):
        with pytest.raises(MomentlensError, match=expect):
            launched()
    else:
        assert launched() == expect
        assert launch_rank() == expect.rank
