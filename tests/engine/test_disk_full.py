"""A disk that fills up during training, on a real small tmpfs: the run stops with one
line naming the checkpoint and the cause, removes its partial temporary folder, keeps
the previous good checkpoint as ``last``, and resumes once space is back."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from momentlens.engine.checkpoint import find_checkpoint, load_checkpoint


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (the run needs about 2.5 MiB); needs root (mount)."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root): {mounted.stderr.strip()}")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(folder: Path) -> Path:
    """Write a file until the disk is full; returns it."""
    filler = folder / "filler"
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_full_disk_during_a_checkpoint_then_resume(synth_dir, small_disk, eng):
    run_dir = small_disk / "run"
    settings = {"width": 0.0625, "checkpoint_steps": 1}
    proc = eng.start_train(eng.train_args(synth_dir, run_dir, **settings))
    eng.wait_for(proc, lambda: eng.last_step(run_dir) >= 1, "step 1")
    filler = _fill(small_disk)
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
