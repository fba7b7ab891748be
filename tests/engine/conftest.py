"""Shared pieces of the training-engine tests: one tiny synthetic dataset per session,
tiny model settings, and helpers that run ``momentlens train`` as a real process (the
resume and signal tests need a process they can kill), optionally with a slow
checkpoint writer (``slow_checkpoint_train.py``).

Helpers reach test modules through the ``eng`` fixture (tests/ is not a package).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from momentlens.data.synth import generate

CLASSES = ["ring", "square", "rising"]  # 4 train + 2 val videos each: 12 + 6
HERE = Path(__file__).resolve().parent

# A tiny 3D model on 32x32 clips of 4 frames: a step takes well under a second on a
# 2-core CPU. The same settings as `--set` arguments for the CLI.
TINY = {"model": "r3d10", "width": 0.125, "frames": 4, "stride": 8, "size": 32, "resize": 32,
        "batch_size": 4, "workers": 0, "lr": 0.01, "schedule": "none", "epochs": 2,
        "device": "cpu"}


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("engine") / "synth"
    generate(out, train_per_class=4, val_per_class=2, size=32, num_frames=90, seed=0,
             classes=CLASSES)
    return out


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(MOMENTLENS_QUIET="1", OMP_NUM_THREADS="2", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def train_args(data: Path, out: Path, **settings: object) -> list[str]:
    """``momentlens train`` arguments for the tiny recipe, with ``settings`` overriding it."""
    values = {**TINY, **settings}
    args = ["--data", str(data), "--out", str(out)]
    for key, value in values.items():
        args += ["--set", f"{key}={value}"]
    return args


def start_train(args: list[str], checkpoint_delay: float = 0, new_session: bool = False,
                **env: str) -> subprocess.Popen:
    """``momentlens train ARGS`` in a new process; with ``checkpoint_delay`` (seconds), each
    checkpoint write pauses that long half-way (see slow_checkpoint_train.py); with
    ``new_session``, in a process group of its own (``os.killpg(proc.pid, sig)`` then
    signals it and its loader workers, as a cluster's scheduler does)."""
    command = [sys.executable, "-m", "momentlens", "train"]
    if checkpoint_delay:
        command = [sys.executable, str(HERE / "slow_checkpoint_train.py"), str(checkpoint_delay)]
    return subprocess.Popen([*command, *args], env=cli_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=new_session)


def torchrun_train(args: list[str], processes: int = 2) -> list[str]:
    """The command of ``momentlens train ARGS`` under torchrun on this machine
    (``--standalone``: a rendezvous on a free local port)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", str(processes), "-m", "momentlens", "train", *args]


def run_train(args: list[str], timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "momentlens", "train", *args],
                          env=cli_env(**env), capture_output=True, text=True, timeout=timeout)


def last_step(run_dir: Path) -> int:
    """Optimiser step of the checkpoint ``last.txt`` names (-1 before the first one)."""
    try:
        name = (run_dir / "checkpoints" / "last.txt").read_text().strip()
    except FileNotFoundError:
        return -1
    return int(name.split("-s")[1]) if name else -1


def wait_for(proc: subprocess.Popen, condition, what: str, timeout: float = 90) -> None:
    """Poll ``condition()`` until true; fail if the process ends or time runs out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}:\n{err}")
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 60
         ) -> tuple[int, str]:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def rows(run_dir: Path) -> list[dict]:
    """The rows of ``RUN/metrics.jsonl``."""
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def group_gone(pgid: int, timeout: float = 20) -> bool:
    """Whether every process of group ``pgid`` (a run and its loader workers) has ended
    within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc), parents first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop(0))
        todo += children.get(tree[-1], [])
    return tree


def weights(run_dir: Path, tag: str = "last") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from momentlens.engine.checkpoint import find_checkpoint

    folder = find_checkpoint(run_dir, tag)
    assert folder is not None, f"{run_dir} has no '{tag}' checkpoint"
    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"


class _Engine:
    TINY = TINY
    HERE = HERE
    train_args = staticmethod(train_args)
    start_train = staticmethod(start_train)
    run_train = staticmethod(run_train)
    torchrun_train = staticmethod(torchrun_train)
    last_step = staticmethod(last_step)
    wait_for = staticmethod(wait_for)
    kill = staticmethod(kill)
    weights = staticmethod(weights)
    rows = staticmethod(rows)
    group_gone = staticmethod(group_gone)
    process_tree = staticmethod(process_tree)
    assert_same_weights = staticmethod(assert_same_weights)
    cli_env = staticmethod(cli_env)


@pytest.fixture
def eng() -> type[_Engine]:
    return _Engine
