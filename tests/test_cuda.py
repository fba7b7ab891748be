"""The same code on a CUDA device: models, training (bf16 autocast, channels_last),
evaluation and class activation maps agree with the CPU.

Every test here needs a GPU and is skipped without one (CI has none: these are run by
hand on a lent GPU machine, see docs/benchmarks.md). Tolerances are those of fp32
convolutions: cuDNN may use TF32 for convolutions by default, so it is turned off here
to compare like with like.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from momentlens.data import synth
from momentlens.engine.checkpoint import load_model
from momentlens.engine.config import load_config
from momentlens.models.registry import create_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CLASSES = ["ring", "square", "falling", "rising"]


@pytest.fixture(autouse=True)
def _exact_fp32():
    conv, mm = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, mm


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cudadata") / "ds"
    synth.generate(out, train_per_class=6, val_per_class=3, size=48, num_frames=45,
                   seed=5, workers=1, classes=CLASSES)
    return out


@pytest.mark.parametrize("name,options,frames", [
    ("r3d18", {"width": 0.25, "shortcut": "A"}, 8),
    ("r3d18", {"width": 0.25, "shortcut": "B", "last_stride": 1}, 8),
    ("rx3d50", {"width": 0.25}, 8),
    ("r2d50", {"width": 0.25}, 4),
])
@pytest.mark.parametrize("channels_last", [False, True])
def test_forward_on_cuda_matches_cpu(name, options, frames, channels_last):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, **options).eval()
    x = torch.randn(2, 3, frames, 64, 64)
    with torch.no_grad():
        expected = model(x)
        gpu = model.cuda()
        xg = x.cuda()
        if channels_last:
            fmt = model.memory_format
            gpu = gpu.to(memory_format=fmt)
            if x.ndim == 5 and fmt == torch.channels_last_3d:
                xg = xg.contiguous(memory_format=fmt)
        got = gpu(xg).cpu()
        feats = gpu.forward_features(xg)
    assert feats.is_cuda and feats.ndim == 5
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_bf16_training_on_cuda_learns_and_reloads_on_cpu(data, tmp_path):
    from momentlens.engine import train as T

    settings = {"model": "r3d10", "width": 0.25, "frames": 8, "stride": 4, "size": 48,
                "resize": 48, "batch_size": 8, "workers": 2, "lr": 0.02,
                "schedule": "cosine", "epochs": 6, "device": "cuda", "amp": "auto",
                "channels_last": True, "data": str(data), "out": str(tmp_path / "run")}
    T.run(load_config(None, settings))
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows]
    assert all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0], losses
    env = json.loads((run / "env.json").read_text())
    assert env["device"].startswith("cuda")
    # The checkpoint is device-free: it loads on the CPU and gives the GPU's outputs.
    cpu_model, meta = load_model(run, "cpu")
    gpu_model, _ = load_model(run, "cuda")
    assert next(gpu_model.parameters()).is_cuda
    x = torch.randn(2, 3, 8, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(gpu_model(x.cuda()).cpu(), cpu_model(x),
                                   rtol=1e-4, atol=1e-4)


def test_evaluate_and_cam_on_cuda_match_cpu(data, tmp_path, write_model_file):
    from momentlens.analysis.evalio import read_evaluation
    from momentlens.cam.video import video_cams
    from momentlens.engine.evaluate import evaluate

    path = write_model_file(tmp_path / "m", CLASSES, 3, model="r3d10", frames=8, size=32,
                            width=0.25, stride=2, last_stride=1)
    for device in ("cpu", "cuda"):
        evaluate(path, data, tmp_path / device, device=device, workers=0, clips=2, crops=3,
                 cam=True, cam_frames=4)
    cpu, gpu = read_evaluation(tmp_path / "cpu"), read_evaluation(tmp_path / "cuda")
    assert cpu.paths == gpu.paths
    np.testing.assert_allclose(gpu.probs, cpu.probs, rtol=1e-4, atol=1e-5)
    m_cpu = json.loads((tmp_path / "cpu" / "metrics.json").read_text())
    m_gpu = json.loads((tmp_path / "cuda" / "metrics.json").read_text())
    assert m_cpu["top1"] == m_gpu["top1"] and m_cpu["top5"] == m_gpu["top5"]
    assert m_cpu["cam"]["pointing"] == pytest.approx(m_gpu["cam"]["pointing"], abs=0.1)

    video = sorted((data / "validation" / "falling").glob("*.mp4"))[0]
    maps = {}
    for device in ("cpu", "cuda"):
        model, meta = load_model(path, device)
        maps[device] = video_cams(model, meta, video, class_names=["falling"], topk=2,
                                  frames=4, sliding=True)
    for a, b in zip(maps["cpu"], maps["cuda"], strict=True):
        assert a.class_index == b.class_index
        np.testing.assert_array_equal(a.frame_indices, b.frame_indices)
        np.testing.assert_allclose(b.heatmaps, a.heatmaps, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(b.probs, a.probs, rtol=1e-4, atol=1e-5)
