"""Bad weight files given as --pretrained (issue 15, point 6): each is refused with one
line saying what the file is and why, never a traceback, never the advice to load it
with ``weights_only=False``; a pickle that would run code never runs."""

from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from momentlens.cli import main
from momentlens.data.encode import write_video
from momentlens.models import create_model, load_pretrained
from momentlens.utils import MomentlensError

WIDTH = 0.25


class _RunsShell:
    """Unpickling this calls ``os.system(command)``: a real code-running checkpoint."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _CallsEval:
    def __reduce__(self):
        return (eval, ("__import__('os').getpid()",))


def _good_file(tmp_path):
    path = tmp_path / "good.pth"
    torch.save(create_model("r3d18", 4, width=WIDTH).state_dict(), path)
    return path


def _bad_files(tmp_path):
    """name -> (path, words the message must contain)."""
    marker = tmp_path / "pwned"
    files = {}
    text = tmp_path / "text.pth"
    text.write_text("these are not weights\n")
    files["text"] = (text, ["a text file starting 'these are not weights'"])
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    files["empty"] = (empty, ["empty (0 bytes)"])
    no_data = tmp_path / "no_data.pth"
    with zipfile.ZipFile(no_data, "w") as archive:
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/notes.txt", "hello\n")
    files["zip_without_data_pkl"] = (no_data, ["a zip archive without data.pkl",
                                               "archive/version"])
    shell = tmp_path / "shell.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "x": _RunsShell(f"echo pwned > {marker}")},
               shell)
    files["os_system"] = (shell, ["refused to load", f"{os.system.__module__}.system",
                                  "could run arbitrary code"])
    raw = tmp_path / "raw_pickle.pth"
    raw.write_bytes(pickle.dumps(_RunsShell(f"echo pwned > {marker}"), protocol=4))
    files["raw_pickle_os_system"] = (raw, ["refused to load", f"{os.system.__module__}.system"])
    evil = tmp_path / "eval.pth"
    torch.save([_CallsEval()], evil)
    files["builtins_eval"] = (evil, ["refused to load", "builtins.eval"])
    good = _good_file(tmp_path).read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good[: len(good) // 2])
    files["truncated_zip"] = (truncated, ["a truncated or damaged zip archive"])
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(1000)}, legacy, _use_new_zipfile_serialization=False)
    legacy.write_bytes(legacy.read_bytes()[:-1000])
    files["truncated_legacy"] = (legacy, ["a pickle (legacy PyTorch format)", "unexpected EOF"])
    folder = tmp_path / "folder.pth"
    folder.mkdir()
    files["directory"] = (folder, ["is a directory"])
    files["not_found"] = (tmp_path / "nope.pth", ["checkpoint not found"])
    lfs = tmp_path / "lfs.pth"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 9\n")
    files["lfs_pointer"] = (lfs, ["Git LFS pointer"])
    fake = tmp_path / "fake.safetensors"
    fake.write_text("{}")
    files["fake_safetensors"] = (fake, ["not a readable safetensors file", "a text file"])
    return files, marker


@pytest.fixture
def bad_files(tmp_path):
    return _bad_files(tmp_path)


def test_each_bad_file_is_one_clear_line(bad_files):
    files, marker = bad_files
    model = create_model("r3d18", 4, width=WIDTH)
    before = model.conv1.weight.detach().clone()
    for name, (path, words) in files.items():
        with pytest.raises(MomentlensError) as err:
            load_pretrained(model, path)
        message = str(err.value)
        assert "\n" not in message, (name, message)
        assert message.startswith(str(path)), (name, message)
        for word in words:
            assert word in message, (name, message)
        assert "weights_only" not in message and "Weights only" not in message, (name, message)
        assert "()" not in message, (name, message)
    assert not marker.exists()  # no pickle ran its command
    torch.testing.assert_close(model.conv1.weight, before)


def test_the_shell_pickle_is_live(bad_files):
    # Proof that the refused file really runs code when unpickled without restriction.
    files, marker = bad_files
    torch.load(files["os_system"][0], weights_only=False)
    assert marker.read_text().strip() == "pwned"


def test_a_good_file_still_loads(tmp_path):
    model = create_model("r3d18", 4, width=WIDTH)
    report = load_pretrained(model, _good_file(tmp_path))
    assert report.initialised == [] and report.ignored == []


def _tiny_dataset(root):
    frames = np.zeros((8, 32, 32, 3), np.uint8)
    for split in ("training", "validation"):
        for cls in ("a", "b"):
            write_video(root / split / cls / "0.mp4", frames, preset="ultrafast")
    return root


@pytest.mark.parametrize("name", ["text", "empty", "os_system", "truncated_zip"])
def test_train_with_bad_pretrained_prints_one_line(tmp_path, bad_files, capsys, monkeypatch,
                                                   name):
    monkeypatch.setenv("MOMENTLENS_QUIET", "1")
    files, marker = bad_files
    path, words = files[name]
    data = _tiny_dataset(tmp_path / "data")
    rc = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--set",
               "model=r3d10", "--set", "width=0.0625", "--frames", "4", "--size", "32",
               "--epochs", "1", "--batch-size", "2", "--workers", "0", "--device", "cpu",
               "--pretrained", str(path)])
    captured = capsys.readouterr()
    assert rc != 0
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in captured.err, captured.err
    assert errors[0].startswith("momentlens train: error: ") and words[0] in errors[0]
    assert "weights_only" not in captured.err + captured.out
    assert not marker.exists()
