"""The default inference path: precision per device, meta-device loading, --no-plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from momentlens.data import synth
from momentlens.engine.checkpoint import load_model, read_model_file
from momentlens.engine.evaluate import evaluate
from momentlens.engine.inference import inference_path
from momentlens.engine.predict import predict
from momentlens.engine.runtime import cpu_has_native_bf16
from momentlens.models.registry import create_model
from momentlens.utils import MomentlensError

CLASSES = ["ring", "square", "falling"]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fastdata") / "ds"
    synth.generate(out, train_per_class=1, val_per_class=2, size=40, num_frames=24,
                   seed=5, workers=1, classes=CLASSES)
    return out


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, write_model_file) -> Path:
    return write_model_file(tmp_path_factory.mktemp("fast") / "m", CLASSES, 2, model="r3d10",
                            frames=4, size=32, width=0.125, stride=2)


def test_precision_choice_per_device():
    fp32 = inference_path("fp32", CPU)
    assert fp32.dtype is None and fp32.channels_last and fp32.precision == "fp32"
    auto = inference_path("auto", CPU)
    assert auto.precision == ("bf16" if cpu_has_native_bf16() else "fp32")
    with pytest.raises(MomentlensError, match="unknown precision"):
        inference_path("fp16", CPU)
    if not cpu_has_native_bf16():
        with pytest.raises(MomentlensError, match="no native bf16"):
            inference_path("bf16", CPU)


def test_channels_last_fp32_is_eager_fp32(model_file):
    model, _ = load_model(model_file)
    fast = inference_path("fp32", CPU)
    prepared, _ = load_model(model_file)
    prepared = fast.prepare(prepared)
    assert prepared.conv1.weight.is_contiguous(memory_format=torch.channels_last_3d)
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        ref = model(x)
    got = fast(prepared, x)
    assert got.is_inference() and got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


def test_meta_device_load_equals_eager_build(model_file):
    tensors, meta = read_model_file(model_file)
    eager = create_model(meta["model"], num_classes=len(CLASSES), **meta["options"])
    eager.load_state_dict(tensors)
    loaded, _ = load_model(model_file)
    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
    assert all(p.requires_grad for p in loaded.parameters())
    for (k, a), (_, b) in zip(eager.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


def test_evaluate_records_precision_and_skips_plots(tmp_path, data, model_file):
    m = evaluate(model_file, data, tmp_path / "e", workers=0, device="cpu", plots=False)
    assert m["precision"] == inference_path("auto", CPU).precision
    assert m["backend"] == "torch"
    assert not list((tmp_path / "e").glob("*.png"))
    written = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert written["precision"] == m["precision"]
    exact = evaluate(model_file, data, tmp_path / "f", workers=0, device="cpu",
                     precision="fp32", plots=False)
    assert exact["precision"] == "fp32"
    assert exact["top1"] == pytest.approx(m["top1"], abs=1 / 3)  # 6 videos: one may flip


def test_predict_precision_flag(data, model_file):
    video = sorted((data / "validation" / "ring").glob("*.mp4"))[0]
    exact = predict(model_file, [video], precision="fp32", device="cpu")[0]["top"]
    auto = predict(model_file, [video], device="cpu")[0]["top"]
    assert [t["class"] for t in exact][:1] == [t["class"] for t in auto][:1] or \
        abs(exact[0]["prob"] - exact[1]["prob"]) < 0.02
    np.testing.assert_allclose(sorted(t["prob"] for t in exact),
                               sorted(t["prob"] for t in auto), atol=0.02)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_path_is_bf16_with_tf32():
    fast = inference_path("auto", torch.device("cuda"))
    assert fast.channels_last and fast.tf32
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    with fast.context():
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    # scoped: what runs after an inference pass keeps the process's settings
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    assert not inference_path("fp32", torch.device("cuda")).tf32
    assert fast.precision == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
