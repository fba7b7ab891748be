"""Issue 21, "the first hour": what a newcomer meets, on real files (tests/first_hour_files.py).

One test per numbered item of the issue, then a walk through the first hour on a small
synthetic dataset that checks every message: check a plain folder, predict a long video,
cam, report, ``models --json | head``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from momentlens.cli import build_parser, main
from momentlens.data import check, synth

CLASSES = ["ring", "square", "falling", "rising"]
ENV = {**os.environ, "MOMENTLENS_QUIET": "1"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory, media) -> dict[str, Path]:
    return media.newcomer_folder(tmp_path_factory.mktemp("fh") / "clips")


@pytest.fixture(scope="module")
def model(tmp_path_factory, write_model_file) -> Path:
    # 8 frames 2 apart: one clip spans 15 frames, 0.6 s at 25 fps.
    return write_model_file(tmp_path_factory.mktemp("fhm") / "run", CLASSES, 0, model="r3d10",
                            frames=8, size=32, width=0.125, stride=2)


# --------------------------------------------------------------------------- 1. plain folders


def test_1_check_and_stats_accept_a_plain_folder_and_a_single_file(clips, capsys):
    report = check.check_dataset(clips["long"].parent, workers=1, min_size=16)
    assert report["probed"] == 7 and report["layout"] is None
    bad = {Path(v["path"]).name: v["problems"] for v in report["videos"] if v["problems"]}
    assert bad == {"audio_only.mp4": ["unreadable"], "notes.mp4": ["unreadable"],
                   "short.mp4": ["too_short"]}
    assert main(["check", str(clips["webm"]), "--workers", "1", "--min-size", "16"]) == 0
    assert "checked 1 videos" in capsys.readouterr().out
    stats = check.dataset_stats(clips["avi"], workers=1)
    assert stats["videos"] == 1 and stats["split"] == "videos"


def test_1_a_folder_without_videos_or_splits_names_every_layout(tmp_path, capsys):
    (tmp_path / "readme.txt").write_text("hi")
    assert main(["check", str(tmp_path)]) == 2
    check_err = capsys.readouterr().err
    assert main(["stats", str(tmp_path)]) == 2
    stats_err = capsys.readouterr().err
    assert check_err.split(":", 1)[1] == stats_err.split(":", 1)[1]  # the same words
    for layout in ("mit", "mmit", "ssv2", "kinetics", "ucf101", "hmdb51", "csv", "folders"):
        assert f"  {layout}: " in check_err
    assert "training/jumping/a.mp4" in check_err and "Traceback" not in check_err


# --------------------------------------------------------------------------- 2. frame rates


@pytest.mark.parametrize(("fps", "odd"), [(25, False), (29.97, False), (23.976, False),
                                          (60, False), (27.485, True), (12, True)])
def test_2_odd_fps_is_judged_against_the_standard_rates(fps, odd):
    assert check.fps_is_odd(fps) is odd


def test_2_mixed_standard_rates_are_fine_a_variable_rate_is_not(tmp_path, media):
    root = tmp_path / "mixed"
    root.mkdir()
    for i, fps in enumerate((25, 25, 29.97, 29.97)):
        media.write_with(root / f"v{i}.mp4", "libx264", "mp4", media.frames(20), fps=fps)
    report = check.check_dataset(root, workers=1, min_size=16)
    assert report["ok"], report["videos"]  # the median (27.485) is no longer the yardstick
    media.write_with(root / "vfr.mp4", "libx264", "mp4", media.frames(30), fps=25,
                 pts=[i if i < 15 else 15 + 3 * (i - 15) for i in range(30)])
    report = check.check_dataset(root, workers=1, min_size=16)
    assert [Path(v["path"]).name for v in report["videos"] if v["problems"]] == ["vfr.mp4"]
    assert report["videos"][0]["variable_fps"] and "varies" in check.describe_check(report)


# --------------------------------------------------------------------------- 3. long and short


def test_3_predict_says_how_much_it_looked_at(clips, model, capsys):
    assert main(["predict", str(model), str(clips["long"]), "--json"]) == 0
    long = json.loads(capsys.readouterr().out)[0]
    assert long["scored"]["clips"] == 10 and long["scored"]["auto"]
    assert long["scored"]["video_s"] == 16.0 and "spread over 16.0 s" in long["scored"]["text"]
    # The Python API chooses the same clips, so it returns what the CLI printed.
    import momentlens

    api = momentlens.load(model, device="cpu").predict(clips["long"], topk=len(long["top"]))
    assert api == [(t["class"], t["prob"]) for t in long["top"]]
    assert main(["predict", str(model), str(clips["long"]), "--clips", "1"]) == 0
    out = capsys.readouterr().out
    assert "scored 1 clip of 0.6 s out of 16.0 s; use --clips N or --timeline" in out
    assert main(["predict", str(model), str(clips["short"])]) == 0
    out = capsys.readouterr().out
    assert "warning: the video has 5 frames, fewer than the 15 of one clip" in out


@pytest.mark.parametrize("kind", ["portrait", "webm", "avi"])
def test_3_predict_reads_every_container(clips, model, kind):
    from momentlens.engine.predict import predict

    result = predict(model, [clips[kind]], topk=2)[0]
    assert len(result["top"]) == 2 and result["scored"]["clips"] == 1


# --------------------------------------------------------------------------- 4. errors, pipes


@pytest.mark.parametrize(("kind", "words"), [("text", "not a readable video container"),
                                             ("audio", "no video stream")])
def test_4_a_file_that_is_not_a_video_gets_one_line_with_the_reason(clips, model, capsys,
                                                                    kind, words):
    assert main(["predict", str(model), str(clips[kind])]) == 1
    captured = capsys.readouterr()
    line = captured.out.strip()
    assert "\n" not in line and words in line and "cannot read this file as a video" in line
    assert "warning above" not in line and "zero clip" not in captured.err + line
    assert main(["predict", str(model), str(clips[kind]), "--json"]) == 1
    assert words in json.loads(capsys.readouterr().out)[0]["error"]
    assert main(["predict", str(model.parent / "nope"), str(clips[kind]), "--json"]) == 2
    assert "error" in json.loads(capsys.readouterr().out)
    assert main(["cam", str(model), str(clips[kind]), "--out", str(clips[kind]) + ".cam"]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 2 and "Traceback" not in err


def test_4_a_closed_pipe_ends_quietly_and_models_is_cached(tmp_path):
    env = {**ENV, "MOMENTLENS_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "momentlens", "models", "--json"]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0 and list(tmp_path.glob("cache/models-*.json"))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader goes away before the table is written: `| head`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and "BrokenPipeError" not in err and not err.strip()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert again.stdout == first.stdout  # the same computed table, read from the cache


# --------------------------------------------------------------------------- 5. small things


def test_5_recipes_are_found_without_yaml(tmp_path, monkeypatch):
    from momentlens.engine.config import load_config, resolve_recipe

    monkeypatch.chdir(tmp_path)
    assert resolve_recipe("mit_mini/rx3d101_16f").name == "rx3d101_16f.yaml"
    assert load_config("mit_mini/rx3d101_16f").model == "rx3d101"


def test_5_cam_checks_the_run_before_mapping(clips, tmp_path, capsys):
    assert main(["cam", str(tmp_path / "no_run"), str(clips["long"]), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "mapping" not in err and not (tmp_path / "o").exists()


def test_5_evaluate_cam_without_boxes_leaves_nothing_behind(tmp_path, model, capsys):
    data = tmp_path / "ds"
    synth.generate(data, train_per_class=1, val_per_class=1, size=32, num_frames=16, seed=1,
                   workers=1, classes=CLASSES)
    (data / "boxes.json").unlink()
    out = tmp_path / "eval"
    assert main(["evaluate", str(model), "--data", str(data), "--out", str(out), "--cam",
                 "--workers", "0"]) == 2
    assert "boxes.json" in capsys.readouterr().err and not out.exists()


def test_5_warmup_never_overshoots_lr():
    import torch

    from momentlens.engine.config import TrainConfig
    from momentlens.engine.factory import make_scheduler

    cfg = TrainConfig(lr=0.05, warmup_epochs=0.1, epochs=2)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = make_scheduler(cfg, opt, 3)
    for _ in range(6):
        assert opt.param_groups[0]["lr"] <= 0.05 + 1e-12
        opt.step()
        sched.step()


# --------------------------------------------------------------------------- 6. help


def test_6_every_flag_has_help_and_shows_its_default():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        for action in parser._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
    text = sub.choices["predict"].format_help()
    assert "classes shown per video (default: 5)" in " ".join(text.split())
    assert "(default: 16)" in " ".join(sub.choices["check"].format_help().split())


# --------------------------------------------------------------------------- 8. demo --quick


def test_8_demo_quick_says_what_it_is_for_before_it_starts(monkeypatch, capsys, tmp_path):
    from momentlens import demo

    def stop(*_a, **_k):
        raise KeyboardInterrupt  # the first stage: nothing is computed

    monkeypatch.setattr(demo, "_stage", stop)
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 130
    err = capsys.readouterr().err
    assert err.startswith("quick mode: a look at the pipeline, too short to show the finding")


# --------------------------------------------------------------------------- 9. the API


def test_9_public_names_are_visible():
    import pydoc

    import momentlens

    for name in ("load", "Classifier", "create_model", "list_models", "load_pretrained"):
        assert name in dir(momentlens) and name in momentlens.__all__
        assert f"``{name}" in momentlens.__doc__
    assert "momentlens.load" in pydoc.render_doc(momentlens)
    assert np.all([callable(getattr(momentlens, n)) for n in ("load", "list_models")])
