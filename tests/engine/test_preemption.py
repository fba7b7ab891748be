"""Cluster pre-emption as SLURM, scancel, Kubernetes or docker stop do it: SIGTERM to the
whole process group, loader workers included. The run saves a checkpoint at the end of
the current step, shuts its workers down and exits with 143 and no traceback; resumed,
it ends bit-identical to an uninterrupted run (CPU, --deterministic, --workers 2), and
the interrupted epoch's training metrics cover the whole epoch."""

from __future__ import annotations

import os
import signal
import subprocess
import time


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
    assert eng.group_gone(proc.pid), "loader workers outlived the run"
    stopped_at = eng.last_step(run_dir)
    assert 1 <= stopped_at < 6

    done = eng.run_train(["--resume", str(run_dir)])
    assert done.returncode == 0, done.stderr
    _, ref_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_err

    assert eng.last_step(run_dir) == eng.last_step(ref_dir) == 6
    eng.assert_same_weights(eng.weights(run_dir), eng.weights(ref_dir))
    rows, ref_rows = eng.rows(run_dir), eng.rows(ref_dir)
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
    assert eng.group_gone(proc.pid)

    proc = eng.start_train(["--resume", str(run_dir)], new_session=True)
    eng.wait_for(proc, lambda: eng.last_step(run_dir) >= max(killed_at + 1, 4), "step 4")
    os.killpg(proc.pid, signal.SIGTERM)  # in the second epoch, the workers persisting
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and eng.group_gone(proc.pid), err
    assert eng.last_step(run_dir) < 6

    done = eng.run_train(["--resume", str(run_dir)])
    assert done.returncode == 0, done.stderr
    _, ref_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_err
    assert eng.last_step(run_dir) == eng.last_step(ref_dir) == 6
    eng.assert_same_weights(eng.weights(run_dir), eng.weights(ref_dir))
    for key in ("train_loss", "train_top1", "val_top1"):
        assert [r[key] for r in eng.rows(run_dir)] == [r[key] for r in eng.rows(ref_dir)], key


def test_sigterm_twice_does_not_abort_the_save(synth_dir, tmp_path, eng):
    # SLURM signals every process of a job and torchrun's agent forwards its own SIGTERM,
    # so a rank can get SIGTERM twice; the second must not abort the checkpoint being
    # written (each save here pauses 1 s half-way, so the second signal lands in it).
    run_dir = tmp_path / "run"
    settings = {"width": 0.0625, "checkpoint_steps": 1, "workers": 2}
    proc = eng.start_train(eng.train_args(synth_dir, run_dir, **settings) + ["--deterministic"],
                           checkpoint_delay=1.0, new_session=True)
    eng.wait_for(proc, lambda: eng.last_step(run_dir) >= 1, "step 1")
    os.killpg(proc.pid, signal.SIGTERM)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "stopped by SIGTERM" in err, err
    assert eng.group_gone(proc.pid)
    stopped_at = eng.last_step(run_dir)
    # the step under way when the signals came was saved: step 1 when the first one came
    # between step 1's checkpoint and the stop check after it (the second then lands in
    # the teardown, which test_stop_signals.py covers), a later one otherwise
    assert 1 <= stopped_at < 6

    done = eng.run_train(["--resume", str(run_dir)])
    assert done.returncode == 0, done.stderr
    assert eng.last_step(run_dir) == 6


def test_slurm_style_sigterm_under_torchrun_resumes_bit_identical(synth_dir, tmp_path, eng):
    # scancel signals every process of the job: torchrun's agent, both ranks and their
    # loader workers, each on its own (the ranks are in sessions of their own), and the
    # agent forwards SIGTERM to the ranks again. The ranks stop after the same step,
    # rank 0 saves it, and the run resumed under torchrun ends as an uninterrupted one.
    settings = {"width": 0.0625, "checkpoint_steps": 1, "workers": 2, "schedule": "cosine",
                "warmup_epochs": 1}
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "preempted"
    env = eng.cli_env(OMP_NUM_THREADS="1")

    def start(args: list[str]) -> subprocess.Popen:
        return subprocess.Popen(eng.torchrun_train(args), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)

    reference = start(eng.train_args(synth_dir, ref_dir, **settings) + ["--deterministic"])
    _, ref_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_err
    proc = start(eng.train_args(synth_dir, run_dir, **settings) + ["--deterministic"])
    eng.wait_for(proc, lambda: eng.last_step(run_dir) >= 1, "step 1", timeout=120)
    tree = eng.process_tree(proc.pid)
    assert len(tree) >= 3, tree  # the agent and two ranks at least
    for pid in tree:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    _, err = proc.communicate(timeout=120)
    assert err.count("stopped by SIGTERM") == 1, err  # rank 0 says it, once
    assert "KeyboardInterrupt" not in err, err
    assert eng.group_gone(proc.pid)
    assert 1 <= eng.last_step(run_dir) < 6

    done = subprocess.run(eng.torchrun_train(["--resume", str(run_dir)]), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("best validation top-1") == 1, done.stdout  # rank 0 only
    assert eng.last_step(run_dir) == eng.last_step(ref_dir) == 6
    eng.assert_same_weights(eng.weights(run_dir), eng.weights(ref_dir))
    for key in ("train_loss", "train_top1", "val_top1"):
        assert [r[key] for r in eng.rows(run_dir)] == [r[key] for r in eng.rows(ref_dir)], key


def test_sigterm_during_the_first_checkpoint_stops_cleanly_at_step_0(synth_dir, tmp_path, eng):
    # The signal lands while step 0's checkpoint is being written, before the first
    # step: the save completes, the run stops there with 143 and the resume hint, and
    # the resumed run trains from step 0 (it used to die of the signal half-way through
    # that save: the handlers were installed only when the loop began).
    run_dir = tmp_path / "run"
    settings = {"width": 0.0625, "checkpoint_steps": 1, "workers": 2}
    proc = eng.start_train(eng.train_args(synth_dir, run_dir, **settings) + ["--deterministic"],
                           checkpoint_delay=2.0, new_session=True)
    checkpoints = run_dir / "checkpoints"
    eng.wait_for(proc, lambda: checkpoints.is_dir() and any(
        p.name.startswith(".tmp-") for p in checkpoints.iterdir()), "step 0's save")
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "stopped by SIGTERM at step 0" in err, err
    assert eng.group_gone(proc.pid)
    assert eng.last_step(run_dir) == 0
    done = eng.run_train(["--resume", str(run_dir)])
    assert done.returncode == 0, done.stderr
    assert eng.last_step(run_dir) == 6
