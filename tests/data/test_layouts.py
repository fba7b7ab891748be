"""The release readers on small hand-written annotation files with the real formats'
quirks: a header or none, 1-based indices, spaces and parentheses in class names,
.webm/.avi files, missing videos, CRLF line endings."""

from __future__ import annotations

import json

import pytest

from momentlens.data.check import check_dataset
from momentlens.data.layouts import (
    LayoutError,
    detect_layout,
    load_split,
    load_training_split,
    scan_split,
)


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write(path, text, crlf=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", "\r\n" if crlf else "\n").encode())
    return path


# ----------------------------------------------------------------------------- M-MiT


def write_moments(root, train_rows, val_rows=None):
    write(root / "moments_categories.txt", "adult+female+singing,0\nbarking,1\nclapping,2\n")
    write(root / "trainingSet.csv", train_rows)
    write(root / "validationSet.csv", val_rows or train_rows)
    for split in ("training", "validation"):
        for name in ("adult+female+singing/a.mp4", "barking/b.mp4", "clapping/c.mp4"):
            touch(root / split / name)
    return root


MMIT = "adult+female+singing/a.mp4,0,2\nbarking/b.mp4,1\nclapping/c.mp4,2,0,1\n"


def test_mmit_is_multi_label_and_keeps_every_index(tmp_path):
    root = write_moments(tmp_path, MMIT)
    split = load_split(root, "training")
    assert split.layout == "mmit" and split.multi_label
    assert [r.labels for r in split.records] == [(0, 2), (1,), (2, 0, 1)]
    assert [r.label for r in split.records] == [0, 1, 2]  # the first index
    assert load_training_split(root).multi_label  # trained with multi-hot targets


def test_mmit_never_read_as_mit_and_back(tmp_path):
    root = write_moments(tmp_path / "m", MMIT)
    with pytest.raises(LayoutError, match=r"trainingSet.csv:1: 2 label indices .*--layout mmit"):
        load_split(root, "training", layout="mit")
    mit = write_moments(tmp_path / "s", "barking/b.mp4,barking,3,0\nclapping/c.mp4,2,3,1\n")
    assert detect_layout(mit) == "mit"
    assert not load_split(mit, "training", missing="keep").multi_label
    with pytest.raises(LayoutError, match=r"trainingSet.csv:1: label 'barking' is not a class index"):
        load_split(mit, "training", layout="mmit", missing="keep")


def test_rows_that_fit_both_are_refused_unless_forced(tmp_path):
    root = write_moments(tmp_path, "barking/b.mp4,1,3,0\nclapping/c.mp4,2,2,1\n")
    with pytest.raises(LayoutError, match="cannot tell MiT from M-MiT.*--layout mit or --layout mmit"):
        load_split(root, "training")
    assert [r.extra["agree"] for r in load_split(root, "training", "mit").records] == [3, 2]
    with pytest.raises(LayoutError, match=r"trainingSet.csv:1: label index 3 is not a class"):
        load_split(root, "training", "mmit")  # read as M-MiT, the votes are no classes


def test_mmit_bad_rows_named(tmp_path):
    root = write_moments(tmp_path, "barking/b.mp4,1,1\nclapping/c.mp4,7,0\nx.mp4\n")
    with pytest.raises(LayoutError) as info:
        load_split(root, "training", "mmit")
    msg = str(info.value)
    assert "trainingSet.csv:1: a label index repeats" in msg
    assert "trainingSet.csv:2: label index 7 is not a class (0..2)" in msg
    assert "trainingSet.csv:3: expected" in msg


# ----------------------------------------------------------------------------- SSv2


def write_ssv2(root):
    write(root / "something-something-v2-labels.json", json.dumps(
        {"Putting something on a surface": "0", "Pushing something from left to right": "1"}))
    train = [{"id": "101", "label": "putting a pen on a table",
              "template": "Putting [something] on a surface", "placeholders": ["a pen"]},
             {"id": "7", "label": "pushing a cup from left to right",
              "template": "Pushing [something] from left to right", "placeholders": ["a cup"]},
             {"id": "55", "label": "Putting something on a surface",
              "template": "Pushing [something] from left to right", "placeholders": ["x"]}]
    write(root / "something-something-v2-train.json", json.dumps(train, indent=2), crlf=True)
    write(root / "something-something-v2-validation.json", json.dumps(train[:1]))
    for vid in ("101", "7"):  # 55 is missing
        touch(root / "20bn-something-something-v2" / f"{vid}.webm")
    return root


def test_ssv2_class_from_template_not_free_text(tmp_path):
    root = write_ssv2(tmp_path)
    assert detect_layout(root) == "ssv2"
    split = load_split(root, "train", missing="skip")
    assert split.classes == ["Putting something on a surface",
                             "Pushing something from left to right"]
    assert [(r.path.name, r.label) for r in split.records] == [("101.webm", 0), ("7.webm", 1)]
    assert [r.path.name for r in split.missing] == ["55.webm"]
    assert any("CRLF" in n for n in split.notes)
    with pytest.raises(LayoutError, match=r"train.json:entry 2: file not found"):
        load_split(root, "training")


def test_ssv2_unknown_template_named(tmp_path):
    root = write_ssv2(tmp_path)
    bad = [{"id": "101", "label": "x", "template": "Spinning [something]"}, {"label": "no id"}]
    write(root / "something-something-v2-validation.json", json.dumps(bad))
    with pytest.raises(LayoutError) as info:
        load_split(root, "validation")
    assert "validation.json:entry 0: template 'Spinning [something]'" in str(info.value)
    assert "validation.json:entry 1: expected" in str(info.value)


# ----------------------------------------------------------------------------- Kinetics


def write_kinetics(root, header="label,youtube_id,time_start,time_end,split\n"):
    write(root / "annotations" / "train.csv", header +
          '"passing American football (in game)",abc_DEF-123,14,24,train\n'
          "abseiling,zzz,0,10,train\nabseiling,gone0000000,30,40,train\n", crlf=True)
    write(root / "annotations" / "val.csv", header +
          "abseiling,vvv,5,15,val\n")
    touch(root / "train" / "passing American football (in game)" / "abc_DEF-123_000014_000024.mp4")
    touch(root / "train" / "abseiling" / "zzz_000000_000010.mp4")
    touch(root / "val" / "vvv_000005_000015.mp4")  # flat
    return root


def test_kinetics_header_spaces_parentheses_and_missing(tmp_path):
    root = write_kinetics(tmp_path)
    assert detect_layout(root) == "kinetics"
    split = load_split(root, "training")  # missing videos are normal: skipped
    assert split.classes == ["abseiling", "passing American football (in game)"]
    assert [(r.path.name, r.label) for r in split.records] == [
        ("abc_DEF-123_000014_000024.mp4", 1), ("zzz_000000_000010.mp4", 0)]
    assert [r.extra["line"] for r in split.missing] == [4]
    val = load_split(root, "validation")
    assert val.records[0].path.parent.name == "val" and val.classes == split.classes
    with pytest.raises(LayoutError, match=r"train.csv:4: file not found"):
        load_split(root, "training", missing="error")
    report = check_dataset(root, workers=1, min_size=1, min_frames=1)
    assert report["layout"] == "kinetics" and report["classes"] == 2
    assert report["splits"]["training"]["missing"] == 1
    assert report["splits"]["training"]["missing_videos"] == ["train/gone0000000_000030_000040.mp4"]
    assert "missing" not in report["counts"]  # normal for Kinetics: a warning
    assert any(w["kind"] == "missing_videos" for w in report["warnings"])


def test_kinetics_wrong_folder_and_bad_row(tmp_path):
    root = write_kinetics(tmp_path)
    path = root / "annotations" / "val.csv"
    path.write_text(path.read_text() + "abseiling,bad,x,10,val\n"
                    '"passing American football (in game)",vvv2,1,2,val\n')
    touch(root / "val" / "abseiling" / "vvv2_000001_000002.mp4")
    with pytest.raises(LayoutError) as info:
        load_split(root, "validation")
    assert "val.csv:3: expected 'label,youtube_id" in str(info.value)
    assert "val.csv:4: vvv2_000001_000002 is listed as" in str(info.value)


# ----------------------------------------------------------------------------- UCF101


def write_ucf(root):
    lists = root / "ucfTrainTestlist"
    write(lists / "classInd.txt", "1 ApplyEyeMakeup\n2 HandstandPushups\n", crlf=True)
    vids = {"ApplyEyeMakeup": ["v_ApplyEyeMakeup_g01_c01.avi", "v_ApplyEyeMakeup_g08_c01.avi",
                               "v_ApplyEyeMakeup_g15_c01.avi"],
            "HandstandPushups": ["v_HandStandPushups_g01_c01.avi", "v_HandStandPushups_g08_c01.avi",
                                 "v_HandStandPushups_g15_c01.avi"]}
    for s in (1, 2, 3):
        train, test = [], []
        for idx, (cls, names) in enumerate(vids.items(), start=1):
            for k, name in enumerate(names):
                (test.append(f"{cls}/{name}") if k == s - 1 else
                 train.append(f"{cls}/{name} {idx}"))
        write(lists / f"trainlist0{s}.txt", "\n".join(train) + "\n", crlf=True)
        write(lists / f"testlist0{s}.txt", "\n".join(test) + "\n", crlf=True)
    for cls, names in vids.items():
        for name in names:
            touch(root / "UCF-101" / cls / name)
    return root


@pytest.mark.parametrize("split_id", [1, 2, 3])
def test_ucf101_one_based_indices_each_split(tmp_path, split_id):
    root = write_ucf(tmp_path)
    train = load_split(root, "training", split_id=split_id)
    test = load_split(root, "test", split_id=split_id)
    assert train.layout == "ucf101" and train.split_id == split_id
    assert train.classes == ["ApplyEyeMakeup", "HandstandPushups"]
    group = f"_g{[1, 8, 15][split_id - 1]:02d}_"
    assert all(group in r.path.name for r in test.records) and len(test) == 2
    assert not any(group in r.path.name for r in train.records) and len(train) == 4
    assert {r.path.parent.name: r.label for r in train.records} == {
        "ApplyEyeMakeup": 0, "HandstandPushups": 1}
    assert all(r.path.suffix == ".avi" and r.path.is_file() for r in train.records)


def test_ucf101_errors_name_the_line(tmp_path):
    root = write_ucf(tmp_path)
    write(root / "ucfTrainTestlist" / "trainlist02.txt",
          "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 2\nApplyEyeMakeup/x.avi 0\n")
    with pytest.raises(LayoutError) as info:
        load_split(root, "training", split_id=2)
    assert "trainlist02.txt:1: index 2 is 'HandstandPushups' but the path is in" in str(info.value)
    assert "trainlist02.txt:2: expected" in str(info.value)
    with pytest.raises(LayoutError, match="--split-id 4: ucf101 has splits 1, 2 and 3"):
        load_split(root, "training", split_id=4)
    write(root / "ucfTrainTestlist" / "classInd.txt", "0 ApplyEyeMakeup\n")
    with pytest.raises(LayoutError, match=r"classInd.txt:1: expected '<index from 1> <class>'"):
        load_split(root, "training")


# ----------------------------------------------------------------------------- HMDB51


def write_hmdb(root):
    names = {"brush_hair": ["April_09_brush_hair_u_nm_np1_ba_goo_0.avi",
                            "(Rad)Schlag_die_Bank!_brush_hair_f_cm_np1_le_med_0.avi",
                            "Aussie_Brush_hair_u_cm_np1_fr_goo_1.avi", "unused_0.avi"],
             "cartwheel": ["c0.avi", "c1.avi", "c2.avi", "c3.avi"]}
    for cls, videos in names.items():
        for s in (1, 2, 3):
            lines = [f"{v} {2 if k == s - 1 else 0 if k == 3 else 1} " for k, v in enumerate(videos)]
            write(root / "testTrainMulti_7030_splits" / f"{cls}_test_split{s}.txt",
                  "\n".join(lines) + "\n", crlf=True)
        for v in videos:
            touch(root / cls / v)
    return root


@pytest.mark.parametrize("split_id", [1, 2, 3])
def test_hmdb51_markers_each_split(tmp_path, split_id):
    root = write_hmdb(tmp_path)
    train = load_split(root, "training", split_id=split_id)
    test = load_split(root, "validation", split_id=split_id)
    assert train.layout == "hmdb51" and train.classes == ["brush_hair", "cartwheel"]
    assert len(train) == 4 and len(test) == 2  # marker 0 (unused) in neither
    assert not any("unused" in r.path.name or r.path.name == "c3.avi" for r in train.records)
    assert [r.path.name for r in test.records if r.label == 1] == [f"c{split_id - 1}.avi"]
    assert {r.label for r in train.records if r.path.parent.name == "cartwheel"} == {1}


def test_hmdb51_bad_marker_named(tmp_path):
    root = write_hmdb(tmp_path)
    write(root / "testTrainMulti_7030_splits" / "cartwheel_test_split1.txt", "c0.avi 3\n")
    with pytest.raises(LayoutError, match=r"cartwheel_test_split1.txt:1: expected '<video>.avi <0\|1\|2>'"):
        load_split(root, "training")


# ----------------------------------------------------------------------------- detection


def test_two_releases_in_one_folder_refused(tmp_path):
    root = write_ucf(tmp_path)
    write_hmdb(root)
    with pytest.raises(LayoutError, match=r"several releases found \(ucf101, hmdb51\)"):
        load_split(root)
    assert load_split(root, "training", "hmdb51").layout == "hmdb51"
    with pytest.raises(LayoutError, match="unknown layout 'ucf'"):
        load_split(root, "training", "ucf")
    with pytest.raises(LayoutError, match="no numbered splits"):
        scan_split(write_ssv2(tmp_path / "s"), "training", split_id=2)


def test_check_reports_layout_classes_and_empty_classes(tmp_path):
    root = write_ucf(tmp_path)
    write(root / "ucfTrainTestlist" / "classInd.txt", "1 ApplyEyeMakeup\n2 HandstandPushups\n3 Yo\n")
    report = check_dataset(root, workers=1, min_size=1, min_frames=1, split_id=2)
    assert report["layout"] == "ucf101" and report["classes"] == 3
    assert report["splits"]["training"]["split_id"] == 2
    assert report["splits"]["validation"]["classes_without_videos"] == ["Yo"]
