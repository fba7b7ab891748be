"""``momentlens models``: parameter counts and multiply-adds, computed."""

from __future__ import annotations

import json

import torch
from torch import nn

from momentlens.cli import main
from momentlens.models import list_models
from momentlens.models.flops import count_macs


def test_count_macs_by_hand():
    model = nn.Sequential(nn.Conv3d(3, 8, 3, stride=(1, 2, 2), padding=1, groups=1, bias=False),
                          nn.Flatten(), nn.Linear(8 * 4 * 4 * 4, 10))
    # conv: 8 x 4 x 4 x 4 outputs, 3 * 27 MACs each; linear: 512 * 10
    assert count_macs(model, (1, 3, 4, 8, 8)) == 8 * 64 * 81 + 512 * 10
    grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False)
    assert count_macs(grouped, (2, 8, 5, 5)) == 2 * 8 * 25 * 2 * 9


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(rows) == list_models()
    r2d50 = rows["r2d50"]
    assert r2d50["params"] == 25_557_032 and r2d50["num_classes"] == 1000
    assert r2d50["input_shape"] == [1, 3, 4, 224, 224]
    assert round(r2d50["macs"] / 4 / 1e9, 2) == 4.09  # ResNet-50: 4.09 GMACs per 224 image
    assert round(rows["r3d18"]["params"] / 1e6, 1) == 33.2
    assert round(rows["rx3d101"]["params"] / 1e6, 1) == 48.3
    for row in rows.values():
        assert row["gflops"] == round(row["macs"] / 1e9, 3) and row["gflops"] > 1


def test_models_table_and_num_classes(capsys):
    assert main(["models", "--num-classes", "339"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.split() and line.split()[0] in list_models()]
    assert len(lines) == len(list_models())
    assert all(line.split()[2] == "339" for line in lines)
    assert "multiply-adds" in out


def test_models_leave_no_meta_tensors_behind():
    # Counting happens on the meta device; real models still build normally afterwards.
    main(["models", "--json"])
    assert torch.empty(1).device.type == "cpu"
