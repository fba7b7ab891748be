"""Shape images for the 2D pretraining stand-in, and the pretraining step itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from momentlens.data import shapes, synth_draw
from momentlens.engine.pretrain2d import pretrain_2d
from momentlens.models.registry import create_model


def test_shape_batches_are_deterministic_and_varied():
    images, labels = shapes.shape_batch(3, 16, 32, seed=1)
    assert images.shape == (16, 32, 32, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.max() < len(shapes.PRETRAIN_SHAPES)
    again, _ = shapes.shape_batch(3, 16, 32, seed=1)
    np.testing.assert_array_equal(images, again)
    other, _ = shapes.shape_batch(4, 16, 32, seed=1)
    assert not np.array_equal(images, other)
    # Shape kinds of their own besides the video classes' shapes.
    assert set(synth_draw.EXTRA_SHAPES) <= set(shapes.PRETRAIN_SHAPES)
    assert not set(shapes.EXTRA_ONLY) & set(synth_draw.CLASS_SHAPES)


def test_every_shape_draws_inside_its_box():
    for kind in shapes.PRETRAIN_SHAPES:
        img = np.zeros((40, 40, 3), np.float32)
        fill = np.ones(3, np.float32)
        synth_draw.draw_shape(img, kind, 20.0, 20.0, 10.0, fill, fill, 0.5)
        ys, xs = np.nonzero(img[..., 0] > 0.5)
        assert len(ys) > 20, kind
        hw, hh = synth_draw.box_extent(kind, 10.0)
        assert xs.min() >= 20 - hw - 2 and xs.max() <= 20 + hw + 1, kind
        assert ys.min() >= 20 - hh - 2 and ys.max() <= 20 + hh + 1, kind


def test_pretrain_writes_weights_the_recipe_model_loads(tmp_path: Path):
    out = tmp_path / "pt.safetensors"
    record = pretrain_2d(out, size=32, steps=2, batch=4, threads=1)
    assert out.is_file() and record["steps"] == 2 and "not ImageNet" in record["what"]
    model = create_model("r2d18", 10, width=0.25, last_stride=1, pretrained=str(out))
    from safetensors.torch import load_file

    saved = load_file(str(out))
    torch.testing.assert_close(model.state_dict()["conv1.weight"], saved["conv1.weight"])


def test_3d_pretraining_on_single_frames_inflates_to_clips(tmp_path: Path):
    """A 3D trunk trained on one-frame clips keeps only its centre taps: on a still clip
    of any length it gives the one-frame model's output, so the clip model starts as
    the image model it was."""
    out = tmp_path / "pt3d.safetensors"
    record = pretrain_2d(out, model="r3d10", size=32, steps=2, batch=4, threads=1)
    assert record["inflation"] == "centre tap" and "not Kinetics" in record["what"]
    from safetensors.torch import load_file

    w = load_file(str(out))["conv1.weight"]  # (O, I, 7, 7, 7)
    assert w[:, :, 3].abs().sum() > 0
    assert w[:, :, :3].abs().sum() == 0 and w[:, :, 4:].abs().sum() == 0
    one = create_model("r3d10", 10, width=0.25, last_stride=1, frames=1, size=32,
                       pretrained=str(out)).eval()
    clip = create_model("r3d10", 10, width=0.25, last_stride=1, frames=16, size=32,
                        pretrained=str(out)).eval()
    image = torch.rand(2, 3, 1, 32, 32)
    with torch.no_grad():
        a = one.forward_features(image).mean(dim=(2, 3, 4))
        b = clip.forward_features(image.expand(-1, -1, 16, -1, -1)).mean(dim=(2, 3, 4))
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
