"""Exact resumption: a run killed at several points (SIGKILL mid-epoch and in the middle
of a checkpoint write, SIGTERM, SIGINT) and resumed each time ends with the same weights,
bit for bit, as a run never interrupted (CPU, ``--deterministic``), with an LR schedule
(warm-up, then cosine) whose scheduler state travels in the checkpoints."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from momentlens.engine.checkpoint import find_checkpoint


def _tmp_folders(run_dir: Path) -> list[Path]:
    root = run_dir / "checkpoints"
    return sorted(root.glob(".tmp-*")) if root.is_dir() else []


def test_killed_and_resumed_run_matches_uninterrupted(synth_dir, tmp_path, eng):
    # 12 training videos, batch 4: 3 steps per epoch, 6 steps in all: 3 of warm-up, 3 of cosine.
    settings = {"checkpoint_steps": 1, "schedule": "cosine", "warmup_epochs": 1}
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "interrupted"
    reference = eng.start_train(eng.train_args(synth_dir, ref_dir, **settings)
                                + ["--deterministic"])
    resume = ["--resume", str(run_dir)]

    # 1. SIGKILL mid-epoch: after step 1 is saved, while step 2 is being computed.
    proc = eng.start_train(eng.train_args(synth_dir, run_dir, **settings) + ["--deterministic"])
    eng.wait_for(proc, lambda: eng.last_step(run_dir) >= 1, "step 1")
    rc, _ = eng.kill(proc)
    assert rc == -signal.SIGKILL
    killed_at = eng.last_step(run_dir)
    assert 1 <= killed_at < 6

    # 2. SIGKILL inside a checkpoint write (a patched writer in the process holds it open).
    proc = eng.start_train(resume, checkpoint_delay=3)
    eng.wait_for(proc, lambda: bool(_tmp_folders(run_dir)), "a checkpoint write")
    rc, _ = eng.kill(proc)
    assert rc == -signal.SIGKILL
    assert _tmp_folders(run_dir), "the half-written folder should still be there"
    assert eng.last_step(run_dir) == killed_at, "the pointer moved before the write finished"
    assert find_checkpoint(run_dir, "last") is not None  # names a complete folder

    # 3. SIGTERM: finishes the step, saves, exits 143 (128 + 15) with a message.
    proc = eng.start_train(resume)
    eng.wait_for(proc, lambda: eng.last_step(run_dir) > killed_at, "a step after the resume")
    rc, err = eng.kill(proc, signal.SIGTERM)
    assert rc == 143, err
    assert "stopped by SIGTERM" in err and "--resume" in err
    assert not _tmp_folders(run_dir), "the resume removed the dead process's temporaries"
    stopped_at = eng.last_step(run_dir)
    assert stopped_at > killed_at

    # 4. SIGINT (Ctrl-C), in the second epoch if the first is over.
    proc = eng.start_train(resume)
    eng.wait_for(proc, lambda: eng.last_step(run_dir) > stopped_at, "a step after the resume")
    rc, err = eng.kill(proc, signal.SIGINT)
    assert rc == 130, err
    assert "stopped by SIGINT" in err

    # 5. Resume until done.
    done = eng.run_train(resume)
    assert done.returncode == 0, done.stderr
    ref_out, ref_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_err

    assert eng.last_step(run_dir) == eng.last_step(ref_dir) == 6
    eng.assert_same_weights(eng.weights(run_dir), eng.weights(ref_dir))
    eng.assert_same_weights(eng.weights(run_dir, "best"), eng.weights(ref_dir, "best"))
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    ref_rows = [json.loads(x) for x in (ref_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [r["val_top1"] for r in rows] == [r["val_top1"] for r in ref_rows]
