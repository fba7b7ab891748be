"""Damaged inputs of a run: a truncated or missing ``last`` checkpoint (resume falls back to
the newest checkpoint that reads, and says so), unreadable videos (listed in
quarantine.jsonl even in the partial batch the sampler leaves out; used again on
--resume once they read), and classes without videos in a split (a warning)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from momentlens.data.layout import load_split
from momentlens.engine import checkpoint as ckpt
from momentlens.engine.distributed import DistInfo, EpochSampler
from momentlens.engine.rng import rng_state
from momentlens.models.registry import create_model
from momentlens.utils import MomentlensError

META = {"model": "r3d10", "num_classes": 3, "options": {"width": 0.0625, "frames": 4,
                                                        "size": 32},
        "classes": ["a", "b", "c"], "input": {}}


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_resume_falls_back_from_a_truncated_last(synth_dir, tmp_path, eng):
    run_dir = tmp_path / "run"
    done = eng.run_train(eng.train_args(synth_dir, run_dir, width=0.0625, epochs=1,
                                        checkpoint_steps=1))
    assert done.returncode == 0, done.stderr
    root = run_dir / "checkpoints"
    last, previous = ckpt.find_checkpoint(run_dir), ckpt.find_checkpoint(run_dir, "previous")
    assert (last.name, previous.name) == ("e0001-s0000003", "e0000-s0000003")
    _truncate(last / "model.safetensors")

    resumed = eng.run_train(["--resume", str(run_dir), "--set", "epochs=2"])
    assert resumed.returncode == 0, resumed.stderr
    assert "e0001-s0000003" in resumed.stderr and "cannot be used" in resumed.stderr
    assert "resuming from e0000-s0000003, the newest checkpoint that reads" in resumed.stderr
    assert f"resuming {run_dir} at epoch 1, step 3" in resumed.stderr
    assert (root / "last.txt").read_text().strip() == "e0002-s0000006"


def test_fallback_order_and_no_silent_fresh_start(tmp_path, caplog):
    torch.manual_seed(0)
    model = create_model("r3d10", num_classes=3, width=0.0625, frames=4, size=32)
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, model, META, {"epoch": 0, "step": step,
                                                     "rng": rng_state()})
    root = tmp_path / "checkpoints"
    _truncate(root / "e0000-s0000003" / "state.pt")
    with caplog.at_level(logging.WARNING):
        _, state = ckpt.readable_checkpoint(tmp_path)
    assert state["step"] == 2
    assert "resuming from e0000-s0000002" in caplog.text and "e0000-s0000003" in caplog.text

    shutil.rmtree(root / "e0000-s0000003")  # 'last' names a folder that is gone
    assert ckpt.readable_checkpoint(tmp_path)[1]["step"] == 2
    _truncate(root / "e0000-s0000002" / "model.safetensors")
    with pytest.raises(MomentlensError, match="no checkpoint of .* can be read.*--overwrite"):
        ckpt.readable_checkpoint(tmp_path)
    assert ckpt.readable_checkpoint(tmp_path / "nothing") is None  # no checkpoint yet


def test_quarantine_lists_the_dropped_batch_and_rechecks_on_resume(synth_dir, tmp_path, eng):
    data, run_dir = tmp_path / "data", tmp_path / "run"
    shutil.copytree(synth_dir, data)
    # No validation videos of 'rising': a warning, not an error.
    val_csv = data / "validationSet.csv"
    val_csv.write_text("".join(x for x in val_csv.read_text().splitlines(keepends=True)
                               if not x.startswith("rising/")))
    # 12 videos, batch 5: two full batches; epoch 0 leaves two videos out. Break one.
    sampler = EpochSampler(12, 5, DistInfo(), seed=0)
    sampler.set_epoch(0)
    records = load_split(data, "training").records
    broken = Path(records[sampler.dropped()[0]].path)
    good = broken.read_bytes()
    broken.write_bytes(b"this is not a video")

    first = eng.run_train(eng.train_args(data, run_dir, width=0.0625, epochs=1, batch_size=5))
    assert first.returncode == 0, first.stderr
    assert "1 of 3 classes have no validation videos: rising" in first.stderr
    listed = [json.loads(x) for x in (run_dir / "quarantine.jsonl").read_text().splitlines()]
    assert str(broken) in {e["path"] for e in listed}
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["train_unreadable"] == 1

    broken.write_bytes(good)  # repaired
    resumed = eng.run_train(["--resume", str(run_dir), "--set", "epochs=2"])
    assert resumed.returncode == 0, resumed.stderr
    assert "read again and are used" in resumed.stderr and str(broken) in resumed.stderr
    text = (run_dir / "quarantine.jsonl").read_text()
    assert str(broken) not in text
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_unreadable"] for r in rows] == [1, 0]
