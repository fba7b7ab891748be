"""Checkpoint folders: written atomically, pointers that always name a complete folder,
clean-up of what no pointer names, self-describing model files, and a diverging run
that stops with a clear message and keeps its last good checkpoint."""

from __future__ import annotations

import threading

import pytest
import torch

from momentlens import cli
from momentlens.engine import checkpoint as ckpt
from momentlens.models.registry import create_model
from momentlens.utils import MomentlensError

META = {"model": "r3d10", "num_classes": 3, "options": {"width": 0.125, "frames": 4, "size": 32},
        "classes": ["a", "b", "c"],
        # the input record as files before mean/std joined it wrote it
        "input": {"sampler": "clip", "frames": 4, "stride": 1, "size": 32, "resize": 37,
                  "norm": "kinetics_255"}}


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("r3d10", num_classes=3, width=0.125, frames=4, size=32)


def _state(epoch: int, step: int) -> dict:
    return {"epoch": epoch, "step": step, "rng": ckpt.rng_state()}


def test_pointers_cleanup_and_keep(tmp_path):
    model = _model()
    ckpt.save_checkpoint(tmp_path, model, META, _state(1, 3), tags=("last", "best"))
    ckpt.save_checkpoint(tmp_path, model, META, _state(2, 6), keep=True)
    ckpt.save_checkpoint(tmp_path, model, META, _state(3, 9))
    ckpt.save_checkpoint(tmp_path, model, META, _state(4, 12))
    root = tmp_path / "checkpoints"
    assert ckpt.find_checkpoint(tmp_path, "last").name == "e0004-s0000012"
    assert ckpt.find_checkpoint(tmp_path, "best").name == "e0001-s0000003"
    # e0003, the 'last' before, stays as 'previous' (a fallback) until the next save.
    assert ckpt.find_checkpoint(tmp_path, "previous").name == "e0003-s0000009"
    ckpt.save_checkpoint(tmp_path, model, META, _state(5, 15))
    # e0003 is now named by no pointer and not kept: removed.
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [
        "e0001-s0000003", "e0002-s0000006", "e0004-s0000012", "e0005-s0000015"]
    assert ckpt.find_checkpoint(tmp_path, "nothing") is None


def test_crash_inside_a_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = _model()
    ckpt.save_checkpoint(tmp_path, model, META, _state(0, 1))

    write = ckpt.save_model_file

    def crash(*args, **kwargs) -> None:  # dies after the model file, before the rename
        write(*args, **kwargs)
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(ckpt, "save_model_file", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, _model(1), META, _state(0, 2))
    root = tmp_path / "checkpoints"
    assert [p.name.startswith(".tmp-e0000-s0000002") for p in root.glob(".tmp-*")] == [True]
    assert ckpt.find_checkpoint(tmp_path).name == "e0000-s0000001"
    monkeypatch.undo()
    ckpt.save_checkpoint(tmp_path, _model(1), META, _state(0, 2))
    assert not list(root.glob(".tmp-*"))  # the next save removes the half-written folder
    tensors, meta, state = ckpt.load_checkpoint(ckpt.find_checkpoint(tmp_path))
    assert state["step"] == 2 and meta["classes"] == ["a", "b", "c"]
    assert torch.equal(tensors["fc.weight"], _model(1).state_dict()["fc.weight"])


def test_a_reader_never_sees_a_pointer_to_an_incomplete_folder(tmp_path):
    model = _model()
    ckpt.save_checkpoint(tmp_path, model, META, _state(0, 0))
    pointer = tmp_path / "checkpoints" / "last.txt"
    done, problems, reads = threading.Event(), [], [0]

    def reader() -> None:
        while not done.is_set():
            name = pointer.read_text().strip()
            folder = tmp_path / "checkpoints" / name
            complete = (folder / "model.safetensors").is_file() and (folder / "state.pt").is_file()
            # A folder may vanish after the pointer moved on; it must never be missing
            # (or half-written) while the pointer still names it.
            if not complete and pointer.read_text().strip() == name:
                problems.append(name)
            reads[0] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for step in range(1, 25):
            ckpt.save_checkpoint(tmp_path, model, META, _state(0, step))
    finally:
        done.set()
        thread.join()
    assert reads[0] > 10 and not problems


def test_model_file_reloads_from_file_folder_or_run(tmp_path):
    model = _model(3).eval()
    folder = ckpt.save_checkpoint(tmp_path, model, META, _state(1, 1), tags=("last", "best"))
    x = torch.randn(2, 3, 4, 32, 32)
    for where in (tmp_path, folder, folder / "model.safetensors"):
        loaded, meta = ckpt.load_model(where)
        assert not loaded.training and meta["classes"] == ["a", "b", "c"]
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))
    with pytest.raises(MomentlensError, match="neither a model file nor a run folder"):
        ckpt.resolve_model_path(tmp_path / "checkpoints")
    (tmp_path / "checkpoints" / "best.txt").write_text("e9999-s0000000\n")
    with pytest.raises(MomentlensError, match="best.txt names e9999-s0000000, which is"):
        ckpt.load_model(tmp_path)


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(
        synth_dir, tmp_path, eng, capsys, monkeypatch):
    monkeypatch.setenv("MOMENTLENS_QUIET", "1")
    run_dir = tmp_path / "run"
    args = eng.train_args(synth_dir, run_dir, lr=1e30, checkpoint_steps=1, epochs=1)
    rc = cli.main(["train", *args])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "the loss became nan" in err and "last good checkpoint is kept" in err
    assert "lower --lr" in err and "Traceback" not in err
    folder = ckpt.find_checkpoint(run_dir, "last")
    tensors, _, state = ckpt.load_checkpoint(folder)
    assert state["step"] >= 0 and folder.name.startswith("e0000-")
    assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))
