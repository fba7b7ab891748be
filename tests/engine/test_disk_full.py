"""A disk that fills up during training, on a real small tmpfs: the run stops with one
line naming the checkpoint and the cause, removes its partial temporary folder, keeps
the previous good checkpoint as ``last``, and resumes once space is back."""

from __future__ import annotations

import subprocess

import pytest

from momentlens.engine.checkpoint import find_checkpoint, load_checkpoint


@pytest.fixture
def small_disk(tmp_path, disks):
    """A 4 MiB tmpfs (the run needs about 2.5 MiB); needs root (mount)."""
    return disks.mount(tmp_path / "disk", "4m")


def test_full_disk_during_a_checkpoint_then_resume(synth_dir, small_disk, disks, eng):
    run_dir = small_disk / "run"
    settings = {"width": 0.0625, "checkpoint_steps": 1}
    proc = eng.start_train(eng.train_args(synth_dir, run_dir, **settings))
    eng.wait_for(proc, lambda: eng.last_step(run_dir) >= 1, "step 1")
    filler = disks.fill(small_disk)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "Traceback" not in err, err
    (line,) = [x for x in err.splitlines() if x.startswith("momentlens train: error:")]
    assert "cannot write" in line and str(run_dir / "checkpoints") in line, line
    assert "No space left on device" in line and "--resume" in line, line

    kept = eng.last_step(run_dir)
    assert kept >= 1 and f"'last' is still {find_checkpoint(run_dir).name}" in line
    load_checkpoint(find_checkpoint(run_dir))  # the previous good checkpoint reads
    assert not list((run_dir / "checkpoints").glob(".tmp-*")), "partial folder left behind"

    filler.unlink()  # space is back
    done = eng.run_train(["--resume", str(run_dir)])
    assert done.returncode == 0, done.stderr
    assert eng.last_step(run_dir) == 6


@pytest.fixture
def board_disk(tmp_path, disks):
    """``RUN/tensorboard`` on a 64 KiB tmpfs of its own (needs root): TensorBoard's disk
    fills while the checkpoints' does not."""
    return disks.mount(tmp_path / "run" / "tensorboard", "64k")


@pytest.mark.parametrize("fails", ["full from the start", "read-only from epoch 2"])
def test_a_tensorboard_disk_that_fails_turns_its_logs_off_not_the_run(synth_dir, board_disk,
                                                                      disks, fails, eng):
    # TensorBoard is a view of metrics.jsonl: a write that fails, in the writer's
    # constructor or on its background thread, is one warning and the run trains on.
    # (A disk filled mid-run would still take a few scalars in the event file's last
    # page; a file system gone read-only refuses the next write at once.)
    run_dir = board_disk.parent
    if fails.startswith("full"):
        disks.fill(board_disk)
    settings = {"width": 0.0625, "epochs": 3, "checkpoint_steps": 1}
    proc = eng.start_train(eng.train_args(synth_dir, run_dir, **settings),
                           checkpoint_delay=0.3)
    if fails.startswith("read-only"):
        eng.wait_for(proc, lambda: (run_dir / "metrics.jsonl").is_file(), "epoch 1's row")
        subprocess.run(["mount", "-o", "remount,ro", str(board_disk)], check=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "Exception in thread" not in err, err
    warnings = [x for x in err.splitlines() if "TensorBoard logs are off" in x]
    why = "No space left on device" if fails.startswith("full") else "Read-only file system"
    assert len(warnings) == 1 and why in warnings[0], err
    rows = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 3 and eng.last_step(run_dir) == 9
