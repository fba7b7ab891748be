"""``cache_features: true`` (a frozen trunk, the head trained on cached features) as a
cluster job meets it: a SIGTERM to the whole process group, loader workers included,
while the features are cached or between two epochs. Real processes, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

CACHED = {"finetune": "fc", "cache_features": True, "epochs": 3, "workers": 2,
          "width": 0.0625}


def _slow_items(args: list[str], marker: Path, eng) -> subprocess.Popen:
    command = [sys.executable, str(eng.HERE / "slow_items_train.py"), "0.3", str(marker)]
    return subprocess.Popen([*command, *args], env=eng.cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_a_run_on_cached_features_trains_the_head_only(synth_dir, tmp_path, eng):
    start_dir, run_dir = tmp_path / "start", tmp_path / "run"
    done = eng.run_train(eng.train_args(synth_dir, start_dir, epochs=1, width=0.0625))
    assert done.returncode == 0, done.stderr
    start = eng.weights(start_dir)
    from momentlens.engine.checkpoint import find_checkpoint
    pretrained = find_checkpoint(start_dir, "last") / "model.safetensors"
    done = eng.run_train(eng.train_args(synth_dir, run_dir, **CACHED,
                                        pretrained=pretrained))
    assert done.returncode == 0, done.stderr
    rows = eng.rows(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert all(0 <= r["val_top1"] <= 1 and r["cache_seconds"] > 0 for r in rows)
    # the trunk (BatchNorm statistics included) is the file's; only the head moved
    last = eng.weights(run_dir)
    moved = {k for k in last if not torch.equal(start[k], last[k])}
    assert moved == {"fc.weight", "fc.bias"}


def test_group_sigterm_while_caching_features_stops_cleanly(synth_dir, tmp_path, eng):
    run_dir, marker = tmp_path / "run", tmp_path / "reading"
    proc = _slow_items(eng.train_args(synth_dir, run_dir, **CACHED), marker, eng)
    eng.wait_for(proc, marker.exists, "the first video read")
    os.killpg(proc.pid, signal.SIGTERM)  # the main process and both loader workers
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "killed by signal" not in err, err
    assert "stopped by SIGTERM while caching features" in err, err
    assert f"--resume {run_dir}" in err
    assert eng.group_gone(proc.pid), "loader workers outlived the run"
    assert eng.last_step(run_dir) == -1  # nothing trained, nothing saved

    done = eng.run_train(["--resume", str(run_dir)])
    assert done.returncode == 0, done.stderr
    assert [r["epoch"] for r in eng.rows(run_dir)] == [1, 2, 3]


def test_sigterm_while_caching_for_overwrite_puts_the_previous_run_back(
        synth_dir, tmp_path, eng):
    run_dir, marker = tmp_path / "run", tmp_path / "reading"
    done = eng.run_train(eng.train_args(synth_dir, run_dir, epochs=1))
    assert done.returncode == 0, done.stderr
    before = eng.weights(run_dir)
    proc = _slow_items(eng.train_args(synth_dir, run_dir, **CACHED) + ["--overwrite"],
                       marker, eng)
    eng.wait_for(proc, marker.exists, "the first video read")
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "is back in place" in err and "run the same command again" in err, err
    assert eng.group_gone(proc.pid)
    assert not (run_dir / ".replaced-run").exists()
    eng.assert_same_weights(eng.weights(run_dir), before)
    assert [r["epoch"] for r in eng.rows(run_dir)] == [1]


def test_group_sigterm_between_epochs_keeps_the_saved_epoch(synth_dir, tmp_path, eng):
    # Each checkpoint write pauses 1 s half-way (slow_checkpoint_train.py): the signal
    # lands in epoch 1's save, which completes; the run stops before epoch 2.
    run_dir = tmp_path / "run"
    proc = eng.start_train(eng.train_args(synth_dir, run_dir, **CACHED),
                           checkpoint_delay=1.0, new_session=True)
    tmp = run_dir / "checkpoints"
    eng.wait_for(proc, lambda: tmp.is_dir() and any(p.name.startswith(".tmp-")
                                                    for p in tmp.iterdir()), "a save")
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "stopped by SIGTERM after epoch 1" in err, err
    assert eng.group_gone(proc.pid)
    assert [r["epoch"] for r in eng.rows(run_dir)] == [1]
    assert eng.last_step(run_dir) == eng.rows(run_dir)[0]["step"]


def test_a_diverging_head_stops_before_saving_a_bad_checkpoint(synth_dir, tmp_path, eng):
    run_dir = tmp_path / "run"
    done = eng.run_train(eng.train_args(synth_dir, run_dir, **{**CACHED, "workers": 0},
                                        lr=1e30))
    assert done.returncode != 0
    assert "the loss became" in done.stderr and "cached features" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    if eng.last_step(run_dir) >= 0:  # an epoch saved before it diverged is a finite one
        assert all(torch.isfinite(t).all() for t in eng.weights(run_dir).values())


def test_under_torchrun_each_rank_caches_its_share(synth_dir, tmp_path, eng):
    # 2 processes over gloo, no loader workers: each process loads about half of the 12
    # training and 6 validation videos, and the head trained on the gathered features is
    # the one a single process trains.
    settings = {**CACHED, "workers": 0}
    single = eng.run_train(eng.train_args(synth_dir, tmp_path / "single", **settings))
    assert single.returncode == 0, single.stderr
    run_dir, marker = tmp_path / "ddp", tmp_path / "loads"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(eng.HERE / "slow_items_train.py"), "0", str(marker),
         *eng.train_args(synth_dir, run_dir, **settings)],
        env=eng.cli_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    loads: dict[str, int] = {}
    for pid in marker.read_text().split():
        loads[pid] = loads.get(pid, 0) + 1
    assert sorted(loads.values()) == [9, 9], loads  # 6 + 3 each, not 18 each
    rows, ref = eng.rows(run_dir), eng.rows(tmp_path / "single")
    assert [r["val_top1"] for r in rows] == [r["val_top1"] for r in ref]
    for a, b in zip(rows, ref):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 * max(1.0, abs(b["train_loss"]))
    for key, value in eng.weights(run_dir).items():
        torch.testing.assert_close(value, eng.weights(tmp_path / "single")[key],
                                   rtol=1e-4, atol=1e-5)
