"""A real ``momentlens serve`` process on a free loopback port, serving two hand-built
colour runs (:mod:`colour_models`), and the small videos the tests upload."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import colour_models as cm  # noqa: E402

LOOPBACK = "127.0.0.1"  # the tests never bind or call any other address
LAUNCH = ("import sys; sys.path.insert(0, {here!r}); import colour_models; "
          "colour_models.register(); from momentlens.cli import main; sys.exit(main(sys.argv[1:]))")


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    tmpdir: Path  # the server's TMPDIR: its private folders live here
    log: Path

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {"2d": cm.write_run(root / "2d", "colour2d"), "3d": cm.write_run(root / "3d", "colour3d")}


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    return {"short": cm.write_clip(root / "triangle_clip.mp4", "triangle", seed=3, seconds=2.0),
            "long": cm.write_clip(root / "falling_8s.mp4", "falling", seed=4, seconds=8.0),
            "too_long": cm.write_clip(root / "ring_40s.mp4", "ring", seed=5, seconds=40.0,
                                      fps=5)}


def start_server(runs: dict[str, Path], tmp: Path, *flags: str) -> Server:
    port = free_port()
    tmpdir = tmp / "server_tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    log = tmp / "server.log"
    cmd = [sys.executable, "-c", LAUNCH.format(here=str(HERE)), "serve", str(runs["2d"]),
           str(runs["3d"]), "--host", LOOPBACK, "--port", str(port), "--device", "cpu",
           "--log-level", "warning", *flags]
    env = {**os.environ, "TMPDIR": str(tmpdir), "OMP_NUM_THREADS": "2"}
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
    server = Server(f"http://{LOOPBACK}:{port}", proc, tmpdir, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    server.stop()
    raise AssertionError(f"serve did not answer within 60 s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def server(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Limits small enough to test: 1 MB uploads, 30 s videos, one worker."""
    s = start_server(runs, tmp_path_factory.mktemp("serve"), "--max-upload-mb", "1",
                     "--max-seconds", "30", "--workers", "1", "--queue", "4")
    yield s
    s.stop()


def upload(url: str, path: Path, name: str | None = None, timeout: float = 60) -> httpx.Response:
    with open(path, "rb") as fh:
        return httpx.post(url + "/api/predict", timeout=timeout,
                          files={"file": (name or path.name, fh, "application/octet-stream")})


def predict_json(run: Path, video: Path, capsys: pytest.CaptureFixture) -> list[dict]:
    """What ``momentlens predict RUN VIDEO --json`` prints, parsed."""
    import json

    from momentlens.cli import main

    cm.register()
    capsys.readouterr()
    assert main(["predict", str(run), str(video), "--json", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)[0]["top"]
