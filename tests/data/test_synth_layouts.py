"""``momentlens synth --layout NAME``: the synthetic dataset written in each release's
format reads back with the labels of the MiT original, video by video; and the
commands run on it."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from momentlens.cli import main
from momentlens.data import synth, synth_layouts
from momentlens.data.layouts import load_split

CLASSES = ("ring", "plus+sign", "falling")
NAMES = {  # class name in each layout, from the MiT name
    "mmit": lambda c: c, "ssv2": lambda c: synth_layouts.ssv2_template(c).replace(
        "[", "").replace("]", ""),
    "kinetics": synth_layouts.kinetics_label, "ucf101": synth_layouts.ucf_class,
    "hmdb51": lambda c: c.replace("+", "_"),
}


@pytest.fixture(scope="module")
def mit_synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "mit"
    synth.generate(out, train_per_class=3, val_per_class=2, size=32, num_frames=8,
                   workers=1, classes=CLASSES)
    return out


def converted(mit_synth, tmp_path, layout):
    out = tmp_path / layout
    shutil.copytree(mit_synth, out)
    synth_layouts.convert(out, layout, workers=1)
    return out.resolve()


def _boxes(root):
    return json.loads((root / "boxes.json").read_text())["videos"]


@pytest.mark.parametrize("layout", ["ssv2", "kinetics", "ucf101", "hmdb51"])
def test_each_video_keeps_its_class(mit_synth, tmp_path, layout):
    old = {json.dumps(b): key.split("/")[1] for key, b in _boxes(mit_synth).items()}
    root = converted(mit_synth, tmp_path, layout)
    assert synth.load_info(root)["layout"] == layout
    new_boxes, seen = _boxes(root), 0
    for split in ("training", "validation"):
        sp = load_split(root, split)
        assert sp.layout == layout and len(sp.classes) == 3
        for rec in sp.records:
            old_class = old[json.dumps(new_boxes[rec.path.relative_to(root).as_posix()])]
            assert sp.classes[rec.label] == NAMES[layout](old_class)
            seen += 1
    assert seen == (15 if layout != "hmdb51" else 12)  # hmdb51 split 1 leaves 3 unused
    assert not (root / "trainingSet.csv").exists() and not (root / "training").exists()


@pytest.mark.parametrize("layout", ["ucf101", "hmdb51"])
def test_three_split_ids_have_disjoint_test_sets(mit_synth, tmp_path, layout):
    root = converted(mit_synth, tmp_path, layout)
    tests = []
    for split_id in (1, 2, 3):
        train = {r.path for r in load_split(root, "training", split_id=split_id).records}
        test = {r.path for r in load_split(root, "validation", split_id=split_id).records}
        assert train and test and not train & test
        tests.append(test)
    assert not (tests[0] & tests[1] or tests[1] & tests[2] or tests[0] & tests[2])
    suffix = {p.suffix for t in tests for p in t}
    assert suffix == {".avi"}


def test_mmit_two_objects_two_labels(mit_synth, tmp_path):
    root = converted(mit_synth, tmp_path, "mmit")
    split = load_split(root, "training")
    assert split.layout == "mmit" and split.multi_label
    for rec in split.records:
        assert split.classes[rec.label] == rec.path.parent.name  # its own class first
    pairs = [r for r in split.records if len(r.labels) == 2]
    assert pairs and len(pairs) < len(split) and all(a != b for a, b in (r.labels for r in pairs))


def test_ssv2_end_to_end(mit_synth, tmp_path, capsys):
    root = converted(mit_synth, tmp_path, "ssv2")
    assert {p.suffix for p in (root / "20bn-something-something-v2").iterdir()} == {".webm"}
    assert main(["check", str(root), "--workers", "1", "--min-size", "16",
                 "--min-frames", "4"]) == 0
    assert "layout: ssv2; 3 classes" in capsys.readouterr().out
    tiny = ["--set", "model=r3d10", "--set", "width=0.0625", "--frames", "4", "--size", "32",
            "--epochs", "1", "--batch-size", "4", "--workers", "0", "--device", "cpu"]
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run"), *tiny]) == 0
    ev = tmp_path / "eval"
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(root), "--out", str(ev),
                 "--workers", "0", "--device", "cpu", "--no-plots"]) == 0
    entries = json.loads((root / "something-something-v2-validation.json").read_text())
    truth = {f"20bn-something-something-v2/{e['id']}.webm":
             e["template"].replace("[", "").replace("]", "") for e in entries}
    with open(ev / "predictions.csv", newline="") as fh:
        got = {row["path"]: row["label"] for row in csv.DictReader(fh)}
    assert got == truth


@pytest.mark.parametrize("layout", ["mmit", "ssv2", "kinetics", "ucf101", "hmdb51"])
def test_prepare_copies_every_layout(mit_synth, tmp_path, layout):
    from momentlens.data.prepare import prepare_dataset as prepare

    root = converted(mit_synth, tmp_path, layout)
    out = tmp_path / f"{layout}-prepared"
    summary = prepare(root, out, workers=1)
    assert summary["failures"] == []
    for split in ("training", "validation"):
        src, copy = load_split(root, split), load_split(out, split)
        assert copy.layout == layout and copy.classes == src.classes
        assert [r.labels for r in copy.records] == [r.labels for r in src.records]
        assert all(r.path.is_file() for r in copy.records)
