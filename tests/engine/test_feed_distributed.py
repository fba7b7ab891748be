"""Multi-process sanity of the training feed (issue 22): two processes on one machine, as
``torchrun --nproc-per-node 2`` starts them (gloo on CPU), each get their share of the
loader workers (workers x processes <= cores), keep them across epochs, and read
disjoint shards whose items are the same draws of ``(seed, epoch, index)`` as anywhere."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_share_the_cores_and_keep_their_workers(tmp_path):
    worker = Path(__file__).with_name("feed_ddp_worker.py")
    port, world = str(_free_port()), 2
    base = {k: v for k, v in os.environ.items()
            if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    procs = [subprocess.Popen(
        [sys.executable, str(worker), "--out", str(tmp_path), "--workers", "8"],
        env={**base, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(world),
             "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
             "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(world)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]

    cores = ranks[0]["cores"]
    assert all(r["workers"] == min(8, cores // world) for r in ranks)
    assert sum(r["workers"] for r in ranks) <= cores  # no oversubscription
    items = {}
    for r in ranks:
        pids = [set(e["pids"]) for e in r["epochs"]]
        if r["workers"]:
            assert pids[0] == pids[1] and len(pids[0]) == r["workers"], "workers persisted"
            assert r["pid"] not in pids[0]
        for epoch, e in enumerate(r["epochs"]):
            assert all(ep == epoch for _, ep in e["items"])
            items.setdefault(epoch, []).extend(d for d, _ in e["items"])
    for epoch, draws in items.items():
        expected = {int(np.random.default_rng((0, epoch, i)).integers(1 << 30))
                    for i in range(16)}
        assert len(draws) == 16 and set(draws) == expected  # disjoint shards cover the set
