"""Cluster pre-emption as SLURM, scancel, Kubernetes or docker stop do it: SIGTERM to the
whole process group, loader workers included. The run saves a checkpoint at the end of
the current step, shuts its workers down and exits with 143 and no traceback; resumed,
it ends bit-identical to an uninterrupted run (CPU, --deterministic, --workers 2), and
the interrupted epoch's training metrics cover the whole epoch."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _group_gone(pgid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_group_sigterm_with_workers_saves_and_resumes_bit_identical(synth_dir, tmp_path, eng):
    # 12 training videos, batch 4: 3 steps per epoch, 6 in all; two loader workers.
    settings = {"width": 0.0625, "checkpoint_steps": 1, "workers": 2, "schedule": "cosine",
                "warmup_epochs": 1}
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "preempted"
    reference = eng.start_train(eng.train_args(synth_dir, ref_dir, **settings)
                                + ["--deterministic"])
    proc = eng.start_train(eng.train_args(synth_dir, run_dir, **settings) + ["--deterministic"],
                           new_session=True)
    eng.wait_for(proc, lambda: eng.last_step(run_dir) >= 1, "step 1")
    os.killpg(proc.pid, signal.SIGTERM)  # the main process and both workers
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "killed by signal" not in err, err
    assert "stopped by SIGTERM" in err and f"--resume {run_dir}" in err
    assert _group_gone(proc.pid), "loader workers outlived the run"
    stopped_at = eng.last_step(run_dir)
    assert 1 <= stopped_at < 6

    done = eng.run_train(["--resume", str(run_dir)])
    assert done.returncode == 0, done.stderr
    _, ref_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_err

    assert eng.last_step(run_dir) == eng.last_step(ref_dir) == 6
    eng.assert_same_weights(eng.weights(run_dir), eng.weights(ref_dir))
    rows, ref_rows = _rows(run_dir), _rows(ref_dir)
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("train_loss", "train_top1", "val_top1"):  # whole epochs, resumed or not
        assert [r[key] for r in rows] == [r[key] for r in ref_rows], key


def test_kill_and_group_sigterm_with_persistent_workers_and_device_augment(
        synth_dir, tmp_path, eng):
    # Issue 22: workers kept across epochs, crop and flip on the device (their draws from
    # (seed, epoch, index)); a kill -9 and a SIGTERM to the group, each resumed.
    settings = {"width": 0.0625, "checkpoint_steps": 1, "workers": 2, "resize": 40,
                "persistent_workers": True, "device_augment": True, "schedule": "cosine",
                "warmup_epochs": 1}
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "interrupted"
    reference = eng.start_train(eng.train_args(synth_dir, ref_dir, **settings)
                                + ["--deterministic"])
    proc = eng.start_train(eng.train_args(synth_dir, run_dir, **settings) + ["--deterministic"],
                           new_session=True)
    eng.wait_for(proc, lambda: eng.last_step(run_dir) >= 1, "step 1")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    killed_at = eng.last_step(run_dir)
    assert _group_gone(proc.pid)

    proc = eng.start_train(["--resume", str(run_dir)], new_session=True)
    eng.wait_for(proc, lambda: eng.last_step(run_dir) >= max(killed_at + 1, 4), "step 4")
    os.killpg(proc.pid, signal.SIGTERM)  # in the second epoch, the workers persisting
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and _group_gone(proc.pid), err
    assert eng.last_step(run_dir) < 6

    done = eng.run_train(["--resume", str(run_dir)])
    assert done.returncode == 0, done.stderr
    _, ref_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_err
    assert eng.last_step(run_dir) == eng.last_step(ref_dir) == 6
    eng.assert_same_weights(eng.weights(run_dir), eng.weights(ref_dir))
    for key in ("train_loss", "train_top1", "val_top1"):
        assert [r[key] for r in _rows(run_dir)] == [r[key] for r in _rows(ref_dir)], key
