"""``momentlens demo``: the paper's study, end to end, on the synthetic dataset.

Stages: generate the Moments-format synthetic dataset (or reuse it), pretrain both
trunks on synthetic shape images (labelled stand-ins for the paper's ImageNet and
Kinetics initialisations, :mod:`momentlens.engine.pretrain2d`), fine-tune the 2D
frame-averaging model and the 3D model with the CPU recipes in ``configs/synth/``,
evaluate both (with CAM localisation scores), compare them, make a CAM gallery and CAM
animations of a few validation videos, and write one HTML report. Every number printed
or written is computed from this run.

The dataset has the generator's default *hard* look: object colours drawn per video
whatever the class, busy backgrounds, distractor shapes and pixel noise, so only shape
and motion name a class.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from momentlens.utils import MomentlensError, write_json_atomic


class DemoStopped(Exception):
    """A training stage was stopped by SIGINT / SIGTERM (its checkpoint saved, the run not
    marked finished, so the next ``momentlens demo`` with the same settings resumes that
    stage from its last checkpoint)."""

    def __init__(self, signum: int, stage: str) -> None:
        super().__init__(f"the {stage} training was stopped by "
                         f"{signal.Signals(signum).name}")
        self.signal, self.stage = int(signum), stage


@dataclass(frozen=True)
class DemoPlan:
    train_per_class: int
    val_per_class: int
    video_size: int
    epochs: int | None  # None: each recipe's own (2D 10, 3D 8)
    cam_videos: int  # validation videos per class scored for CAM localisation
    pretrain_steps: int = 600  # each trunk's stand-in for ImageNet/Kinetics (engine/pretrain2d)
    pretrain_size: int = 96  # px of the shape images, about the recipes' crop scale


FULL = DemoPlan(train_per_class=60, val_per_class=20, video_size=128, epochs=None,
                cam_videos=10)
QUICK = DemoPlan(train_per_class=20, val_per_class=6, video_size=128, epochs=6, cam_videos=3,
                 pretrain_steps=300)

#: The synthetic look the demo trains on, and what the report says about it.
DATA_PRESET = "hard"
DATA_NOTE = ("Data: momentlens synth with its default hard look: every object's colour is "
             "drawn per video whatever its class, on busy backgrounds with distractor "
             "shapes and pixel noise, so only shape and motion name a class. Both trunks "
             "start from a pretraining on synthetic shape images, a stand-in for the "
             "paper's ImageNet and Kinetics weights.")
#: Validation videos of these classes get CAM animations beside the report.
CAM_MEDIA_CLASSES = ("falling", "opening", "square")

MODELS = {
    # key: (recipe, label for people)
    "2d": ("r2d_tiny.yaml", "2D ResNet-18, 4 frames, averaged (trunk pretrained on synthetic "
           "shape images, a stand-in for ImageNet)"),
    "3d": ("r3d_tiny.yaml", "3D ResNet-10, 16-frame clips (trunk pretrained on synthetic "
           "shape images and inflated, a stand-in for Kinetics)"),
}


def _recipe(name: str) -> Path:
    # The shipped recipe itself, never a same-named file in the working folder.
    from momentlens.engine.config import RECIPES_DIR

    path = RECIPES_DIR / "synth" / name
    if not path.is_file():
        raise MomentlensError(f"demo recipe {path} not found: the installation is missing "
                              "momentlens/configs/synth/; reinstall momentlens")
    return path


def _stage(title: str) -> float:
    print(f"\n== {title}", file=sys.stderr, flush=True)
    return time.perf_counter()


def _done(t0: float, what: str) -> None:
    print(f"   {what} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)


def _dataset(out: Path, plan: DemoPlan, seed: int, workers: int) -> Path:
    from momentlens.data import synth

    data = out / "data"
    wanted = {"train": plan.train_per_class, "val": plan.val_per_class, "size": plan.video_size,
              "seed": seed, "preset": DATA_PRESET}
    if synth.is_complete(data):
        info = synth.load_info(data)
        have = {"train": info["videos"]["training"] // len(info["classes"]),
                "val": info["videos"]["validation"] // len(info["classes"]),
                "size": info["size"], "seed": info["seed"], "preset": info.get("preset")}
        if have == wanted and info["classes"] == synth.all_classes():
            print(f"   reusing the dataset in {data}", file=sys.stderr)
            return data
    summary = synth.generate(data, train_per_class=plan.train_per_class,
                             val_per_class=plan.val_per_class, size=plan.video_size, seed=seed,
                             workers=workers, overwrite=True, preset=DATA_PRESET)
    print("   " + synth.describe(summary).replace("\n", "\n   "), file=sys.stderr)
    return data


def pretrain_trunk(key: str, out: Path, plan: DemoPlan, seed: int, overrides: dict[str, Any]
              ) -> Path:
    """The ``key`` run's trunk pretrained on single synthetic shape images (their own
    draws and extra shape kinds, no video of the dataset), built like that run's model:
    a labelled stand-in for the paper's ImageNet (2D) and Kinetics (3D) initialisations;
    the 3D trunk sees one-frame clips and is inflated (engine/pretrain2d). Reused when a
    file with the same settings exists."""
    from momentlens.engine.config import load_config
    from momentlens.engine.factory import BUILDER_SETTINGS, model_options
    from momentlens.engine.pretrain2d import pretrain_2d

    cfg = load_config(_recipe(MODELS[key][0]),
                      {k: v for k, v in overrides.items() if k in BUILDER_SETTINGS})
    # the recipe's architecture; the pretraining has its own image size and one frame
    trunk = {k: v for k, v in model_options(cfg).items() if k not in ("frames", "size")}
    settings = {"model": cfg.model, **trunk,
                "size": plan.pretrain_size, "steps": plan.pretrain_steps, "seed": seed}
    path = out / f"pretrain_{key}.safetensors"
    record = path.parent / (path.name + ".json")
    if path.is_file() and _stamped(record, settings):
        print(f"   reusing {path}", file=sys.stderr)
        return path
    pretrain_2d(path, **settings)
    return path


def _train(key: str, data: Path, out: Path, plan: DemoPlan, device: str, seed: int,
           overrides: dict[str, Any]) -> Path:
    from momentlens.data import synth
    from momentlens.engine import train as T
    from momentlens.engine.checkpoint import find_checkpoint
    from momentlens.engine.config import load_config

    run_dir = out / "runs" / key
    cfg = load_config(_recipe(MODELS[key][0]), {
        "data": str(data), "out": str(run_dir), "epochs": plan.epochs, "device": device,
        "seed": seed, **overrides})  # epochs None: the recipe's
    done = run_dir / "DONE.json"
    # A finished run is reused only for the same settings on the same generated data.
    stamp = {"config": cfg.to_dict(), "data": synth.load_info(data)}
    if _stamped(done, stamp):
        print(f"   reusing the finished run {run_dir}", file=sys.stderr)
        return run_dir
    # What a run was started with, beside it: a run stopped by Ctrl-C or SIGTERM goes on
    # from its last checkpoint when the next demo asks for the same run.
    started = run_dir.parent / f".{key}.started.json"
    result = None
    if _stamped(started, stamp) and find_checkpoint(run_dir) is not None:
        print(f"   resuming the stopped run {run_dir} from its last checkpoint",
              file=sys.stderr)
        try:
            result = T.run(cfg, resume=True)
        except MomentlensError as exc:
            print(f"   cannot resume it ({exc}); training it again", file=sys.stderr)
    if result is None:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        write_json_atomic(started, stamp)
        result = T.run(cfg)
    if result.get("stopped"):  # Ctrl-C or SIGTERM: saved, not finished; the demo ends
        raise DemoStopped(result["signal"], key)
    write_json_atomic(done, {**stamp, "result": result})
    started.unlink(missing_ok=True)
    return run_dir


def _stamped(path: Path, stamp: dict[str, Any]) -> bool:
    """Whether the JSON file ``path`` records ``stamp`` (its keys, equal values)."""
    if not path.is_file():
        return False
    try:
        recorded = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(recorded, dict) and {k: recorded.get(k) for k in stamp} == stamp


def group_metrics(eval_dir: Path, appearance: list[str], pairs: list[list[str]]) -> dict[str, Any]:
    """Top-1/top-5 on the appearance classes and on the time-reversed pairs, and the
    accuracy of telling the two classes of a pair apart (chance: 0.5)."""
    from momentlens.analysis.evalio import read_evaluation
    from momentlens.analysis.metrics import topk_correct

    ev = read_evaluation(eval_dir)
    names = list(ev.class_names)
    label_names = np.array([names[i] for i in ev.labels])
    top1 = topk_correct(ev.probs, ev.labels, 1)
    top5 = topk_correct(ev.probs, ev.labels, min(5, len(names)))
    pair_classes = [c for p in pairs for c in p]
    out: dict[str, Any] = {}
    for group, members in (("appearance", appearance), ("pairs", pair_classes)):
        mask = np.isin(label_names, members)
        out[group] = {"top1": float(top1[mask].mean()), "top5": float(top5[mask].mean()),
                      "n": int(mask.sum())}
    within, per_pair = [], {}
    for a, b in pairs:
        ia, ib = names.index(a), names.index(b)
        mask = np.isin(label_names, [a, b])
        true_is_a = label_names[mask] == a
        chose_a = ev.probs[mask, ia] > ev.probs[mask, ib]
        correct = chose_a == true_is_a
        within.append(correct)
        per_pair[f"{a}/{b}"] = float(correct.mean())
    out["within_pair"] = float(np.concatenate(within).mean())
    out["within_pair_by_pair"] = per_pair
    out["overall"] = {"top1": float(ev.metrics["top1"]), "top5": float(ev.metrics["top5"])}
    out["cam_pointing"] = ev.metrics.get("cam", {}).get("pointing")
    return out


def finding(groups: dict[str, dict[str, Any]]) -> tuple[bool, str]:
    """The paper's claim, checked against this run's numbers."""
    g2, g3 = groups["2d"], groups["3d"]
    gap_pairs = g3["pairs"]["top1"] - g2["pairs"]["top1"]
    gap_app = abs(g3["appearance"]["top1"] - g2["appearance"]["top1"])
    holds = (g3["pairs"]["top1"] >= 0.9 and g2["within_pair"] <= 0.65 and gap_app <= 0.1)
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    text = (
        f"On the time-reversed pairs (classes that differ only in the direction of time) the "
        f"3D model reaches {pct(g3['pairs']['top1'])} top-1 and the 2D frame-averaging model "
        f"{pct(g2['pairs']['top1'])} (a gap of {100 * gap_pairs:.1f} points). Asked only to "
        f"tell the two classes of a pair apart, the 2D model is right {pct(g2['within_pair'])} "
        f"of the time (chance is 50%), the 3D model {pct(g3['within_pair'])}. On the appearance "
        f"classes the two are {'close' if gap_app <= 0.1 else 'apart'}: "
        f"{pct(g2['appearance']['top1'])} (2D) and {pct(g3['appearance']['top1'])} (3D). ")
    text += ("This is the paper's finding: temporal classes need a spatio-temporal model, "
             "appearance classes do not." if holds else
             "This run does NOT reproduce the paper's finding clearly; see the numbers above.")
    p2, p3 = g2.get("cam_pointing"), g3.get("cam_pointing")
    if p2 is not None and p3 is not None:
        text += (f" The class activation maps put their maximum inside the object's box in "
                 f"{pct(p3)} (3D) and {pct(p2)} (2D) of the scored frames.")
    return holds, text


def _table(groups: dict[str, dict[str, Any]]) -> str:
    def cell(v: float | None) -> str:
        return "   n/a" if v is None else f"{100 * v:5.1f}%"

    rows = [
        ("overall top-1", lambda g: g["overall"]["top1"]),
        ("overall top-5", lambda g: g["overall"]["top5"]),
        ("appearance classes top-1", lambda g: g["appearance"]["top1"]),
        ("time-reversed pairs top-1", lambda g: g["pairs"]["top1"]),
        ("  within-pair accuracy", lambda g: g["within_pair"]),
        ("CAM pointing game", lambda g: g["cam_pointing"]),
    ]
    head = f"{'':28s}{'2D (4 frames)':>16s}{'3D (16 frames)':>16s}"
    lines = [head, "-" * len(head)]
    for title, get in rows:
        lines.append(f"{title:28s}{cell(get(groups['2d'])):>16s}{cell(get(groups['3d'])):>16s}")
    return "\n".join(lines)


def _finding_html(groups: dict[str, dict[str, Any]], text: str) -> str:
    table = html.escape(_table(groups))
    return f"<p>{html.escape(text)}</p><pre>{table}</pre>"


QUICK_NOTE = ("quick mode: a look at the pipeline, too short to show the finding "
              "(run `momentlens demo` without --quick for the study)")


def run(out_dir: str | Path = "demo_out", device: str = "auto", quick: bool = False,
        seed: int = 0, workers: int = 0, plan: DemoPlan | None = None,
        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the demo into ``out_dir``. ``plan`` and ``overrides`` (settings applied to both
    recipes, e.g. ``{"size": 32}``) exist for tests and experiments; the defaults are the
    documented demo."""
    from momentlens.analysis.report import write_report
    from momentlens.data import synth
    from momentlens.engine.runtime import resolve_device

    plan = plan or (QUICK if quick else FULL)
    if quick:  # said before the minutes of work, not after
        print(QUICK_NOTE, file=sys.stderr, flush=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    t0 = _stage("1/6 synthetic Moments-in-Time-format dataset")
    data = _dataset(out, plan, seed, workers)
    info = synth.load_info(data)
    _done(t0, f"dataset ready: {data}")
    runs = {}
    t0 = _stage("2/6 pretrain both trunks on synthetic shape images (stand-ins for "
                "ImageNet and Kinetics)")
    extra = {k: {"pretrained": str(pretrain_trunk(k, out, plan, seed, overrides or {}))}
             for k in MODELS}
    _done(t0, "pretrained")
    for n, key in enumerate(MODELS, start=3):
        t0 = _stage(f"{n}/6 train {MODELS[key][1]}")
        runs[key] = _train(key, data, out, plan, device, seed, {**extra[key], **(overrides or {})})
        _done(t0, f"trained: {runs[key]}")
    t0 = _stage("5/6 evaluate both models (with CAM localisation), compare")
    evals, groups = _evaluate(runs, data, out, plan, device, info)
    _done(t0, "evaluated")
    t0 = _stage("6/6 CAM gallery, CAM animations and report")
    holds, text = finding(groups)
    if quick and not holds:
        text += " A quick run is too short for the finding; run the demo without --quick."
    text = f"{text} {DATA_NOTE}"
    loaded = _load_runs(runs, device)
    sections = [("Class activation maps", _gallery(loaded, evals, data)),
                ("CAM over time", _cam_media(loaded, data, out))]
    report = write_report([evals["2d"], evals["3d"]], out / "report.html",
                          title="momentlens demo: 2D frame averaging vs 3D convolution",
                          extra_sections=sections,
                          lead_sections=[("What this run shows", _finding_html(groups, text))])
    summary = {"groups": groups, "finding_holds": holds, "finding": text,
               "report": str(report), "seconds": round(time.perf_counter() - t_all, 1),
               "quick": quick, "device": str(resolve_device(device))}
    write_json_atomic(out / "summary.json", summary)
    _done(t0, f"report: {report}")
    print("\n" + _table(groups))
    print("\n" + text)
    print(f"\nreport: {report}\n(total {summary['seconds']:.0f} s)")
    print(f"both models side by side in a browser (pip install 'momentlens[serve]'):\n"
          f"  momentlens serve {runs['2d']} {runs['3d']}")
    return summary


def _evaluate(runs: dict[str, Path], data: Path, out: Path, plan: DemoPlan, device: str,
              info: dict[str, Any]) -> tuple[dict[str, Path], dict[str, dict[str, Any]]]:
    """Evaluate both runs (with CAM localisation), compare them; the evaluation folders
    and each model's group metrics."""
    from momentlens.analysis.compare import compare_evaluations
    from momentlens.engine.evaluate import describe, evaluate

    evals, groups = {}, {}
    for key in MODELS:
        evals[key] = out / "eval" / key
        metrics = evaluate(runs[key], data, evals[key], split="validation", device=device,
                           cam=True, cam_videos_per_class=plan.cam_videos)
        print(f"   {key}: " + describe(metrics).replace("\n", "\n   "), file=sys.stderr)
        groups[key] = group_metrics(evals[key], info["appearance_classes"],
                                    info["time_reversed_pairs"])
    compare_evaluations(evals["2d"], evals["3d"], out / "compare", name_a="2D", name_b="3D")
    return evals, groups


def _load_runs(runs: dict[str, Path], device: str) -> dict[str, tuple[Any, dict]]:
    from momentlens.engine.checkpoint import load_model
    from momentlens.engine.runtime import resolve_device

    return {k: load_model(runs[k], resolve_device(device)) for k in ("3d", "2d")}


def _gallery(loaded: dict[str, tuple[Any, dict]], evals: dict[str, Path], data: Path) -> str:
    from momentlens.cam.gallery import gallery_section

    return gallery_section(*loaded["3d"], evals["3d"], data, label="3D model") + \
        gallery_section(*loaded["2d"], evals["2d"], data, label="2D model")


def _cam_media(loaded: dict[str, tuple[Any, dict]], data: Path, out: Path) -> str:
    """Each model's CAM of its top class as an animated GIF over the whole video (sliding
    windows for the 3D model), for the first validation video of a few classes; written
    to ``out/cam/`` and shown in the report. Returns the report section's HTML."""
    from momentlens.cam.render import gif_bytes, overlay_frames, playback_fps
    from momentlens.cam.video import video_cams
    from momentlens.data.layout import load_split
    from momentlens.utils import write_bytes_atomic

    split = load_split(data, "validation")
    rows = []
    for name in CAM_MEDIA_CLASSES:
        rec = next(r for r in split.records if split.classes[r.label] == name)
        cells = []
        for key, (model, meta) in sorted(loaded.items()):
            cam = video_cams(model, meta, rec.path, frames=16)[0]
            gif = gif_bytes(overlay_frames(cam), playback_fps(cam))
            write_bytes_atomic(out / "cam" / key / f"{rec.path.stem}.gif", gif)
            src = "data:image/gif;base64," + base64.b64encode(gif).decode("ascii")
            cells.append(f"<td><img src='{src}' alt='{key} CAM' width='224'><br>"
                         f"{key.upper()}: {html.escape(cam.class_name)}</td>")
        rows.append(f"<tr><th>{html.escape(name)}</th>{''.join(cells)}</tr>")
    return ("<p>The map of each model's top class over the whole video (also saved as GIF "
            "files in <code>cam/</code> beside this report).</p><table>" + "".join(rows) + "</table>")
