"""Dataset layouts: every layout, and the malformed cases reported with file:line."""

from __future__ import annotations

import shutil

import pytest

from momentlens.data.layout import LayoutError, load_classes, load_split


def test_mit_layout(mit_root):
    split = load_split(mit_root, "training")
    assert split.layout == "mit" and split.name == "training"
    assert split.classes == ["jumping", "plus+sign", "running"]
    assert len(split) == 6
    rec = split.records[2]
    assert rec.path.is_absolute() and rec.path.is_file()
    assert rec.path.parent.name == "plus+sign" and rec.label == 1
    assert rec.extra["agree"] == 3 and rec.extra["line"] == 3
    assert len(load_split(mit_root, "val")) == 6  # alias


def test_categories_index_order_is_output_order(mit_root):
    (mit_root / "moments_categories.txt").write_text("running,0\njumping,2\nplus+sign,1\n")
    assert load_classes(mit_root) == ["running", "plus+sign", "jumping"]
    split = load_split(mit_root, "training")
    assert {r.path.parent.name: r.label for r in split.records} == {
        "running": 0, "plus+sign": 1, "jumping": 2}


def test_integer_labels_accepted(mit_root):
    csv = mit_root / "trainingSet.csv"
    csv.write_text(csv.read_text().replace(",jumping,", ",0,"))
    assert [r.label for r in load_split(mit_root).records][:2] == [0, 0]


def test_crlf_and_bom_tolerated_with_note(mit_root, caplog):
    csv = mit_root / "trainingSet.csv"
    csv.write_bytes(b"\xef\xbb\xbf" + csv.read_bytes().replace(b"\n", b"\r\n"))
    cat = mit_root / "moments_categories.txt"
    cat.write_bytes(cat.read_bytes().replace(b"\n", b"\r\n"))
    split = load_split(mit_root, "training")
    assert len(split) == 6 and split.records[0].path.name == "tra_0.mp4"
    assert split.records[0].label == 0
    assert any("byte-order mark" in n for n in split.notes)
    assert any("CRLF" in n for n in split.notes)
    assert "CRLF" in caplog.text


def test_unknown_label_duplicate_and_malformed_named_with_lines(mit_root):
    csv = mit_root / "trainingSet.csv"
    lines = csv.read_text().splitlines()
    lines[1] = lines[1].replace(",jumping,", ",flying,")
    lines.append(lines[0])
    lines.append("just-one-field")
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(LayoutError) as info:
        load_split(mit_root, "training")
    msg = str(info.value)
    assert "trainingSet.csv:2: unknown label 'flying'" in msg
    assert "trainingSet.csv:7:" in msg and "already listed on line 1" in msg
    assert "trainingSet.csv:8: expected" in msg


def test_missing_files_error_skip_keep(mit_root):
    victim = mit_root / "training" / "running" / "tra_1.mp4"
    victim.unlink()
    with pytest.raises(LayoutError, match=r"trainingSet.csv:6: file not found"):
        load_split(mit_root, "training")
    skipped = load_split(mit_root, "training", missing="skip")
    assert len(skipped) == 5 and skipped.missing[0].path == victim
    kept = load_split(mit_root, "training", missing="keep")
    assert len(kept) == 6 and victim in [r.path for r in kept.records]
    with pytest.raises(LayoutError, match="missing="):
        load_split(mit_root, "training", missing="maybe")


def test_empty_split(mit_root):
    (mit_root / "trainingSet.csv").write_text("\n")
    with pytest.raises(LayoutError, match=r"trainingSet.csv:0: split 'training' has no videos"):
        load_split(mit_root, "training")


def test_bad_categories_file(mit_root):
    (mit_root / "moments_categories.txt").write_text("a,0\nb,0\nc\n")
    with pytest.raises(LayoutError) as info:
        load_split(mit_root)
    msg = str(info.value)
    assert "moments_categories.txt:2: index 0 already used" in msg
    assert "moments_categories.txt:3: expected 'name,index'" in msg


def test_no_split_found(tmp_path):
    with pytest.raises(LayoutError, match="no split 'training' found"):
        load_split(tmp_path)
    with pytest.raises(LayoutError, match="dataset folder not found"):
        load_split(tmp_path / "nope")


def test_class_folder_layout(mit_root):
    for name in ("trainingSet.csv", "validationSet.csv", "moments_categories.txt"):
        (mit_root / name).unlink()
    train = load_split(mit_root, "training")
    assert train.layout == "folders"
    assert train.classes == ["jumping", "plus+sign", "running"]
    assert [r.label for r in train.records] == [0, 0, 1, 1, 2, 2]
    shutil.rmtree(mit_root / "validation" / "jumping")  # classes still from training/
    val = load_split(mit_root, "validation")
    assert val.classes == train.classes and {r.label for r in val.records} == {1, 2}
    (mit_root / "validation" / "dancing").mkdir()
    with pytest.raises(LayoutError, match="class folder 'dancing' is not a known class"):
        load_split(mit_root, "validation")


def test_two_column_csv_layout(tmp_path, vids):
    for i in range(3):
        vids.write_test_video(tmp_path / "clips" / f"v{i}.mp4", 4)
    (tmp_path / "train.csv").write_text(
        "path,label\nclips/v0.mp4,cat\nclips/v1.mp4,dog\n" f"{tmp_path / 'clips/v2.mp4'},cat\n")
    split = load_split(tmp_path, "train")
    assert split.layout == "csv" and split.classes == ["cat", "dog"]
    assert [r.label for r in split.records] == [0, 1, 0]
    assert split.records[2].path == (tmp_path / "clips/v2.mp4").resolve()
    (tmp_path / "train.csv").write_text("clips/v0.mp4,0\nclips/v1.mp4,2\n")
    assert load_split(tmp_path, "train").classes == ["0", "1", "2"]


def test_frame_folders_resolve_from_csv(mit_root):
    from PIL import Image

    video = mit_root / "training" / "jumping" / "tra_0.mp4"
    folder = video.with_suffix("")
    folder.mkdir()
    for i in range(1, 4):
        Image.new("RGB", (8, 8)).save(folder / f"image_{i:05d}.jpg")
    video.unlink()
    split = load_split(mit_root, "training")
    assert split.records[0].path == folder
    # and in the class-folder layout
    for name in ("trainingSet.csv", "validationSet.csv"):
        (mit_root / name).unlink()
    paths = [r.path for r in load_split(mit_root, "training").records]
    assert folder in paths and len(paths) == 6


def test_each_listed_video_is_looked_up_once(mit_root, monkeypatch):
    # On a network file system every stat is a round trip: a split of 100,000 videos
    # looked each one up twice (resolving frame folders, then checking the file).
    import os

    real, looked_up = os.stat, []

    def counting(path, *args, **kwargs):
        if os.fspath(path).endswith(".mp4"):
            looked_up.append(os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting)
    split = load_split(mit_root, "training")
    assert sorted(looked_up) == sorted(str(r.path) for r in split.records)  # once each
