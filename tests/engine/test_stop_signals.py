"""StopRequest's handlers after the run: a second SIGTERM during the teardown of a run
that stopped on SIGTERM must not kill the process; and a SIGTERM to the process group
while loader workers start must not kill a worker (real signals, in a child process)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

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
