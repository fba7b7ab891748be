"""Fixtures for the analysis tests: small evaluation folders made on the fly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from momentlens.analysis import metrics as M
from momentlens.analysis.evalio import write_evaluation

CLASSES = ["barbecuing", "grilling", "frying", "stirring", "<b>opening & closing</b>", "empty"]


def make_scores(seed: int, n: int = 48, strength: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Video probabilities and labels; the last class gets no videos."""
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    labels = np.arange(n) % (k - 1)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), labels] += strength
    return M.softmax(logits), labels


def make_eval(root: Path, name: str, seed: int, **kwargs) -> Path:
    probs, labels = make_scores(seed, **kwargs)
    paths = [f"validation/{CLASSES[c]}/clip{i:03d}.mp4" for i, c in enumerate(labels)]
    out = root / name
    write_evaluation(out, video_probs=probs, labels=labels, paths=paths, class_names=CLASSES,
                     clip_probs=probs, clip_labels=labels,
                     meta={"model": name, "data": "synthetic", "split": "validation"},
                     unreadable=["validation/frying/broken.mp4"])
    return out


@pytest.fixture(scope="session")
def two_evals(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evals")
    return make_eval(root, "2D-ResNet", 1), make_eval(root, "3D-ResNeXt", 2, strength=2.5)


# Tests get the helpers through fixtures rather than `import conftest`, which would
# break as soon as another test folder has a conftest.py of its own.
@pytest.fixture
def eval_factory():
    return make_eval


@pytest.fixture
def scores_factory():
    return make_scores


@pytest.fixture
def class_names() -> list[str]:
    return list(CLASSES)
