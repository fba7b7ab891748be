"""Helpers shared by the model tests: reference layouts and checkpoint files in real formats."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "momentlens_reference_keys", FIXTURES / "make_reference_keys.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REFERENCE = _load_generator()


def make_reference_state(name: str, scale: int = 4, seed: int = 0,
                         classes: int | None = None) -> dict[str, torch.Tensor]:
    """Random tensors in the layout of reference ``name``, channels divided by ``scale``.

    The layout comes from the independent reference generator (whose full-size
    output is pinned in ``fixtures/*.json``), not from momentlens.
    """
    _source, counters, dims, block, layers, planes, shortcut, ref_classes = \
        REFERENCE.REFERENCES[name]
    keys = REFERENCE.reference_keys(dims, block, layers, [p // scale for p in planes], shortcut,
                                    classes or ref_classes, stem=64 // scale)
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in keys:
        if key.endswith("num_batches_tracked"):
            if counters:
                state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.1
    return state


@pytest.fixture
def reference_state():
    """``reference_state(name, scale=4, seed=0, classes=None)``: see make_reference_state."""
    return make_reference_state


@pytest.fixture
def reference_generator():
    """The independent reference-layout generator module (fixtures/make_reference_keys.py)."""
    return REFERENCE


@pytest.fixture
def save(tmp_path):
    """``save(obj, name)`` writes ``obj`` with ``torch.save`` and returns the path."""
    def _save(obj, name: str = "ckpt.pth") -> Path:
        path = tmp_path / name
        torch.save(obj, path)
        return path
    return _save


@pytest.fixture(autouse=True)
def _one_thread():
    # The test models are tiny: extra intra-op threads only add synchronisation, and
    # on a busy 2-core machine they triple the run time. Restored after each test.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
