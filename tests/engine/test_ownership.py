"""One owner per run folder, with real processes: a finished run is never trained over
without --resume or --overwrite, --overwrite keeps the old run until the new one has a
checkpoint, and a folder a live process trains in is refused at once (the flock lock),
while a process killed with SIGKILL leaves no stale lock behind."""

from __future__ import annotations

import json
import signal
import time

import yaml

FAST = {"width": 0.0625, "epochs": 1, "max_steps_per_epoch": 1, "val_every": 0}


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("momentlens train: error:")]


def test_a_finished_run_is_refused_then_overwritten(synth_dir, tmp_path, eng):
    run_dir = tmp_path / "run"
    done = eng.run_train(eng.train_args(synth_dir, run_dir, **FAST))
    assert done.returncode == 0, done.stderr
    before = eng.weights(run_dir)

    # Again without --resume: one line naming both ways on; nothing touched.
    again = eng.run_train(eng.train_args(synth_dir, run_dir, **FAST, seed=7))
    assert again.returncode == 2, again.stderr
    (line,) = _error_lines(again.stderr)
    assert "already holds a run" in line and "--resume" in line and "--overwrite" in line
    assert "Traceback" not in again.stderr
    eng.assert_same_weights(eng.weights(run_dir), before)
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["seed"] == 0

    # --overwrite whose new run fails before its first checkpoint: the old run comes back.
    failed = eng.run_train(eng.train_args(tmp_path / "no-such-data", run_dir, **FAST, seed=7)
                           + ["--overwrite"])
    assert failed.returncode == 2 and "is back in place" in failed.stderr, failed.stderr
    eng.assert_same_weights(eng.weights(run_dir), before)
    assert not (run_dir / ".replaced-run").exists()

    # --overwrite: a clean new run; the old one is removed once the new has a checkpoint.
    new = eng.run_train(eng.train_args(synth_dir, run_dir, **FAST, seed=7) + ["--overwrite"])
    assert new.returncode == 0, new.stderr
    assert "removed the previous run" in new.stderr
    assert not (run_dir / ".replaced-run").exists()
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["seed"] == 7
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]
    assert any(not (a == b).all() for a, b in zip(eng.weights(run_dir).values(),
                                                  before.values()))


def test_two_processes_never_share_a_run_folder(synth_dir, tmp_path, eng):
    run_dir = tmp_path / "run"
    settings = {"width": 0.0625, "epochs": 2, "checkpoint_steps": 1}
    # Each checkpoint write pauses 2 s: the first run outlives the attempts below.
    first = eng.start_train(eng.train_args(synth_dir, run_dir, **settings), checkpoint_delay=2)
    try:
        eng.wait_for(first, lambda: eng.last_step(run_dir) >= 0, "the first checkpoint")
        t0 = time.monotonic()
        attempts = [eng.start_train(eng.train_args(synth_dir, run_dir, **settings) + extra)
                    for extra in ([], ["--overwrite"])]
        attempts.append(eng.start_train(["--resume", str(run_dir)]))
        for proc in attempts:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 2, err
            (line,) = _error_lines(err)
            assert f"{run_dir} is in use by process {first.pid}" in line
        assert time.monotonic() - t0 < 30
        assert first.poll() is None, "the first run must go on undisturbed"
    finally:
        rc, err = eng.kill(first, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    # The kernel dropped the lock with the process: a resume takes the folder over.
    done = eng.run_train(["--resume", str(run_dir)])
    assert done.returncode == 0, done.stderr
    assert eng.last_step(run_dir) == 6
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))
