"""No colour shortcut in the default synthetic data.

A tiny colour classifier (mean RGB of the object's box and of the whole frame, plus the
box's mean hue as a point on the colour wheel; logistic regression and nearest
centroid) is trained on videos of the appearance classes and scored on other videos.
On the default (hard) look it must stay near chance (0.25 for four classes); on the
old look with one hue per class (``colour="fixed"``) the same classifier must name the
class, which shows that the test can fail.
"""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from momentlens.data import synth

SIZE, FRAMES, TRAIN, VAL = 64, 12, 40, 25
CHANCE_BOUND = 0.45  # 4 classes: chance 0.25; 0.45 is ~4 standard errors above it


def _features(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Colour features of one video ``(T, H, W, 3)`` uint8 with boxes ``(T, 4)``:
    box mean RGB (3), frame mean RGB (3), saturation-weighted hue on the wheel (2)."""
    box_means = []
    for img, (x0, y0, x1, y1) in zip(frames, boxes):
        box_means.append(img[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0))
    box = np.mean(box_means, axis=0) / 255.0
    whole = frames.reshape(-1, 3).mean(axis=0) / 255.0
    h, s, _ = colorsys.rgb_to_hsv(*box)
    wheel = [s * np.cos(2 * np.pi * h), s * np.sin(2 * np.pi * h)]
    return np.concatenate([box, whole, wheel])


def _data(colour: str, offset: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = [], []
    for label, cls in enumerate(synth.APPEARANCE_CLASSES):
        for i in range(per_class):
            frames, boxes = synth.render_video(cls, (offset, label, i), size=SIZE,
                                               num_frames=FRAMES,
                                               look=synth.make_look("hard", colour=colour))
            x.append(_features(frames, boxes))
            y.append(label)
    return np.array(x), np.array(y)


def _logistic(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, k: int) -> np.ndarray:
    """Multinomial logistic regression by full-batch gradient descent; returns labels."""
    mu, sd = xtr.mean(axis=0), xtr.std(axis=0) + 1e-6
    a, b = (xtr - mu) / sd, (xte - mu) / sd
    w, bias = np.zeros((a.shape[1], k)), np.zeros(k)
    onehot = np.eye(k)[ytr]
    for _ in range(500):
        z = a @ w + bias
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        w -= 0.5 * (a.T @ (p - onehot) / len(a) + 1e-3 * w)
        bias -= 0.5 * (p - onehot).mean(axis=0)
    return (b @ w + bias).argmax(axis=1)


def _nearest_centroid(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, k: int) -> np.ndarray:
    mu, sd = xtr.mean(axis=0), xtr.std(axis=0) + 1e-6
    a, b = (xtr - mu) / sd, (xte - mu) / sd
    centres = np.stack([a[ytr == c].mean(axis=0) for c in range(k)])
    return ((b[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)


def _accuracies(colour: str) -> dict[str, float]:
    xtr, ytr = _data(colour, 1, TRAIN)
    xte, yte = _data(colour, 2, VAL)
    k = len(synth.APPEARANCE_CLASSES)
    out = {}
    for name, cols in [("box+frame+hue", slice(None)), ("box rgb", slice(0, 3)),
                       ("frame rgb", slice(3, 6))]:
        for clf in (_logistic, _nearest_centroid):
            pred = clf(xtr[:, cols], ytr, xte[:, cols], k)
            out[f"{clf.__name__.strip('_')} on {name}"] = float((pred == yte).mean())
    return out


@pytest.fixture(scope="module")
def hard() -> dict[str, float]:
    return _accuracies("random")


def test_default_look_has_no_colour_shortcut(hard: dict[str, float]):
    assert synth.PRESETS[synth.DEFAULT_PRESET].colour == "random"
    for name, acc in hard.items():
        assert acc <= CHANCE_BOUND, f"{name}: {acc:.2f} on the default look (chance 0.25)"


def test_class_hues_are_caught():
    """The same classifier names the class when each class has its own hue."""
    fixed = _accuracies("fixed")
    assert fixed["logistic on box+frame+hue"] >= 0.9, fixed
    assert fixed["nearest_centroid on box rgb"] >= 0.7, fixed
