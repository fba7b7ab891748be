"""StopRequest's handlers after the run: a second SIGTERM during the teardown of a run
that stopped on SIGTERM must not kill the process (real signals, in a child process)."""

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
