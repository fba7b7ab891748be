"""A tiny 3D and a tiny 2D model learn on the synthetic dataset, and what is saved
reloads into a model that gives exactly the outputs of the one in memory."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest
import torch

from momentlens.data.layout import load_split
from momentlens.engine import checkpoint as ckpt
from momentlens.engine import train as T
from momentlens.engine.config import config_of_run, load_config
from momentlens.engine.factory import make_dataset
from momentlens.engine.inference import Normalizer, score_dataset
from momentlens.models.spec import InputSpec


@pytest.mark.parametrize("model,optimizer,lr", [
    ("r3d10", "sgd", 0.005),  # 3D: one (B, C, T, H, W) clip
    ("r2d18", "adamw", 0.003),  # 2D: frames through the trunk, scores averaged
])
def test_loss_falls_and_checkpoint_reloads(synth_dir, tmp_path, eng, monkeypatch,
                                           model, optimizer, lr):
    trained = []
    original = ckpt.save_checkpoint

    def spy(run_dir, model, *args, **kwargs):  # keep a handle on the model in memory
        trained.append(model)
        return original(run_dir, model, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_checkpoint", spy)
    settings = {**eng.TINY, "model": model, "optimizer": optimizer, "lr": lr, "epochs": 6,
                "val_every": 0, "data": str(synth_dir), "out": str(tmp_path / "run")}
    cfg = load_config(None, settings)
    result = T.run(cfg)
    run_dir = tmp_path / "run"

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows]
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], f"the loss did not fall: {losses}"
    assert result["best_epoch"] == 6  # only the last epoch is validated (val_every=0)

    # The saved model rebuilds from its file alone and gives bit-identical outputs.
    in_memory = trained[-1].eval()
    reloaded, meta = ckpt.load_model(run_dir)
    assert meta["model"] == model
    assert meta["classes"] == load_split(synth_dir, "training").classes
    assert meta["input"]["frames"] == 4 and meta["input"]["size"] == 32
    x = torch.randn(3, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(in_memory(x), reloaded(x))
    for key, value in in_memory.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key

    # ... and scores the validation split exactly as validation did during training.
    split = load_split(synth_dir, "validation")
    spec = InputSpec.from_dict(meta["input"])
    assert spec == reloaded.input_spec
    assert json.loads((run_dir / "input.json").read_text()) == meta["input"]
    val = make_dataset(cfg, spec, split, train=False, run_dir=None)
    scores = score_dataset(reloaded, val, torch.device("cpu"), Normalizer(spec), batch_size=4)
    top1 = float(np.mean(scores.video_probs.argmax(1) == scores.labels))
    assert top1 == rows[-1]["val_top1"]

    # The run folder: resolved settings that load back, environment, TensorBoard scalars.
    assert config_of_run(run_dir) == cfg
    env = json.loads((run_dir / "env.json").read_text())
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    train_loss = events.Scalars("train/loss")
    assert [e.step for e in train_loss] == [r["step"] for r in rows]
    np.testing.assert_allclose([e.value for e in train_loss], losses, rtol=1e-6)
    assert [e.value for e in events.Scalars("val/top1")] == [np.float32(rows[-1]["val_top1"])]


def test_training_runs_without_tensorboard(synth_dir, tmp_path, eng, monkeypatch, caplog):
    # A None entry in sys.modules makes the import fail as if the package were missing.
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    cfg = load_config(None, {**eng.TINY, "epochs": 1, "max_steps_per_epoch": 1,
                             "data": str(synth_dir), "out": str(tmp_path / "run")})
    with caplog.at_level(logging.WARNING):
        result = T.run(cfg)
    assert result["step"] == 1
    (message,) = [r.getMessage() for r in caplog.records if "TensorBoard" in r.getMessage()]
    assert "logs are off" in message and "pip install 'momentlens[tensorboard]'" in message
    assert not list((tmp_path / "run").rglob("events.out.tfevents.*"))


@pytest.mark.parametrize("model", ["r2d18", "r3d10"])
def test_channels_last_trains_2d_and_3d_models(synth_dir, tmp_path, eng, model):
    # 2D models have 4D weights: channels_last_3d would not apply to them.
    cfg = load_config(None, {**eng.TINY, "model": model, "epochs": 1, "max_steps_per_epoch": 1,
                             "channels_last": True, "data": str(synth_dir),
                             "out": str(tmp_path / "run")})
    result = T.run(cfg)
    assert result["step"] == 1 and np.isfinite(result["train_loss"])
