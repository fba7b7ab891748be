"""StopRequest's handlers after the run: a second SIGTERM during the teardown of a run
that stopped on SIGTERM must not kill the process; a SIGTERM to the process group
while loader workers start must not kill a worker; and a command with nothing to save
(`evaluate`) stops on a group SIGTERM with a line that says so, status 143, and its
workers gone (real signals, in child processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from momentlens.engine.signals import StopRequest, exit_status
    with StopRequest() as stop:
        if sys.argv[1] == "stop":
            os.kill(os.getpid(), signal.SIGTERM)  # the first: the run saves and stops
            time.sleep(0.1)
    os.kill(os.getpid(), signal.SIGTERM)  # the second, during the teardown
    time.sleep(0.2)
    sys.exit(exit_status(stop.signal) if stop.signal else 0)
""")


def _run(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True,
                          text=True, timeout=60)


def test_a_second_sigterm_after_a_sigterm_stop_keeps_the_exit_status():
    done = _run("stop")
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert "SIGTERM: saving a checkpoint" in done.stderr


def test_without_a_stop_the_default_handler_comes_back():
    done = _run("none")
    assert done.returncode == -signal.SIGTERM, done.stderr


WORKER_START_SCRIPT = textwrap.dedent("""
    import os, signal, threading, time
    import torch
    from torch.utils.data._utils import worker
    from momentlens.engine.inference import make_loader
    from momentlens.engine.signals import StopRequest

    # Widen the window a worker has between torch's own signal handlers (its SIGTERM
    # handler re-raises with the default action) and the loader's worker_init_fn.
    original = worker.signal_handling._set_worker_signal_handlers
    def slow(*args):
        original(*args)
        time.sleep(0.8)
    worker.signal_handling._set_worker_signal_handlers = slow

    data = [torch.full((4,), float(i)) for i in range(8)]
    loader = make_loader(data, 2, 2, torch.utils.data.SequentialSampler(data),
                         torch.device("cpu"))
    with StopRequest() as stop:
        threading.Timer(0.3, os.killpg, (0, signal.SIGTERM)).start()  # workers in the window
        total = sum(float(batch.sum()) for batch in loader)
    print(total, stop.signal)
""")


def test_a_sigterm_while_loader_workers_start_does_not_kill_them():
    done = subprocess.run([sys.executable, "-c", WORKER_START_SCRIPT], capture_output=True,
                          text=True, timeout=60, start_new_session=True)
    assert done.returncode == 0, done.stderr
    assert "killed by signal" not in done.stderr
    assert done.stdout.split() == [str(4.0 * sum(range(8))), str(int(signal.SIGTERM))]


# `momentlens evaluate` with loader workers whose items are slowed down, so the signal
# surely lands while videos are being scored; the command line itself is the real one.
SLOW_EVALUATE_SCRIPT = textwrap.dedent("""
    import sys, time
    from momentlens.cli import main
    from momentlens.engine.evaluate import MultiViewDataset

    original = MultiViewDataset.__getitem__
    def slow(self, index):
        time.sleep(0.5)
        return original(self, index)
    MultiViewDataset.__getitem__ = slow
    sys.exit(main(sys.argv[1:]))
""")


def test_a_group_sigterm_stops_evaluate_with_its_workers_and_says_so(tmp_path, eng,
                                                                     write_model_file):
    # What a cluster does to a job that runs an evaluation: SIGTERM to every process.
    # Before, the command died of the signal without a word (status -15) and its loader
    # workers, which ignore SIGTERM, stayed behind until they noticed.
    from momentlens.data import synth

    classes = ["ring", "square"]
    data = tmp_path / "data"
    synth.generate(data, train_per_class=1, val_per_class=6, size=48, num_frames=30,
                   seed=5, workers=1, classes=classes)
    model = write_model_file(tmp_path / "m", classes, 0, model="r3d10", frames=8, size=32,
                             width=0.125, stride=2)
    out = tmp_path / "eval"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_EVALUATE_SCRIPT, "evaluate", str(model), "--data",
         str(data), "--out", str(out), "--workers", "2", "--batch-size", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        # both workers forked: videos are being read
        eng.wait_for(proc, lambda: len(eng.process_tree(proc.pid)) >= 3, "loader workers")
        time.sleep(0.7)
        os.killpg(proc.pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "momentlens evaluate: stopped by SIGTERM" in stderr
    assert "Traceback" not in stderr
    assert not (out / "metrics.json").exists()  # an unfinished evaluation never looks done
    # The workers went with the command: nothing of its process group is left.
    assert eng.group_gone(proc.pid, timeout=2)
