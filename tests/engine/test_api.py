"""``momentlens.load``: the Python API returns what the commands print and save."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import momentlens
from momentlens.cli import main
from momentlens.data import synth
from momentlens.utils import MomentlensError

CLASSES = ["ring", "square", "falling", "rising"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("apidata") / "ds"
    synth.generate(out, train_per_class=1, val_per_class=1, size=40, num_frames=24,
                   seed=11, workers=1, classes=CLASSES)
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory, write_model_file) -> Path:
    return write_model_file(tmp_path_factory.mktemp("api") / "m", CLASSES, 4, model="r3d10",
                            frames=4, size=32, width=0.125, stride=2)


@pytest.fixture(scope="module")
def clf(run):
    return momentlens.load(run, device="cpu")


def _videos(data: Path) -> list[Path]:
    return sorted((data / "validation").rglob("*.mp4"))


def test_public_names_are_listed_and_lazy():
    code = ("import sys, momentlens; names = dir(momentlens); "
            "assert 'load' in names and 'load' in momentlens.__all__; "
            "assert 'torch' not in sys.modules, 'import momentlens pulled in torch'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_classes_and_repr(clf):
    assert clf.classes == CLASSES
    assert clf.input_spec.frames == 4 and "r3d10" in repr(clf)


def test_predict_is_exactly_what_the_cli_prints(clf, run, data, capsys):
    video = _videos(data)[0]
    assert main(["predict", str(run), str(video), "--json", "--topk", "3",
                 "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)[0]["top"]
    assert clf.predict(video, topk=3) == [(t["class"], t["prob"]) for t in printed]


def test_predict_many_matches_the_cli_on_several_videos(clf, run, data, capsys):
    videos = _videos(data)
    assert main(["predict", str(run), *map(str, videos), "--json", "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert clf.predict_many(videos) == [[(t["class"], t["prob"]) for t in r["top"]]
                                        for r in printed]


def test_call_gives_logits_on_the_fast_path(clf):
    x = torch.randn(2, 3, 4, 32, 32)
    logits = clf(x)
    assert logits.shape == (2, len(CLASSES)) and logits.dtype == torch.float32
    with torch.no_grad():
        ref = clf.model(x)
    tol = 5e-2 if clf.precision == "bf16" else 1e-4
    torch.testing.assert_close(logits, ref, rtol=tol, atol=tol * float(ref.abs().max()))
    with pytest.raises(ValueError, match="B, 3, T, H, W"):
        clf(torch.randn(3, 4, 32, 32))


def test_cam_arrays_are_what_the_cam_command_saves(clf, run, data, tmp_path):
    video = _videos(data)[0]
    assert main(["cam", str(run), str(video), "--out", str(tmp_path / "c"),
                 "--device", "cpu"]) == 0
    saved = np.load(tmp_path / "c" / "cam.npz")
    maps = clf.cam(video)
    assert maps["class_name"] == saved["class_name"]
    assert maps["frames"].dtype == np.uint8 and maps["frames"].ndim == 4
    for key in ("heatmaps", "frame_indices", "probs", "evidence"):
        np.testing.assert_allclose(maps[key], saved[key], rtol=1e-4, atol=1e-4, err_msg=key)


def test_untrusted_and_missing_files_are_refused(tmp_path, clf):
    evil = tmp_path / "model.safetensors"
    evil.write_bytes(b"\x80\x04 not safetensors")
    with pytest.raises(MomentlensError, match="not a readable safetensors"):
        momentlens.load(evil)
    with pytest.raises(MomentlensError, match="does not exist"):
        clf.predict(tmp_path / "nope.mp4")
