"""The synthetic dataset in the other release formats: ``momentlens synth --layout NAME``.

:func:`convert` takes a dataset that :func:`momentlens.data.synth.generate` wrote in
the Moments-in-Time layout and rewrites it in place, as the real release would hold it:

``mmit``
    Multi-Moments: the same files; every second video of a split is replaced by a
    split-screen of itself and a video of another class (each half-size, side by side,
    both whole and moving for the whole clip), so it shows two objects and its row
    lists both class indices (its own first). The others keep one label.
``ssv2``
    Something-Something v2: class ``c`` becomes the template ``"C [something]"`` (class
    name ``"C something"``), videos ``20bn-something-something-v2/<id>.webm`` (VP9),
    ``something-something-v2-{labels,train,validation}.json``.
``kinetics``
    Kinetics: labels ``"c (synthetic shape)"`` (spaces, parentheses),
    ``annotations/{train,val}.csv`` with the release header, training videos under
    ``train/<label>/``, validation videos flat in ``val/``, named
    ``<youtube_id>_<start:06d>_<end:06d>.mp4``; each list names one video that is not
    there, as real copies lack the videos deleted from YouTube.
``ucf101`` / ``hmdb51``
    Training and validation videos pooled per class into three numbered splits (video
    ``i`` of a class is a test video of split ``i % 3 + 1``), ``.avi`` (MPEG-4 part 2),
    with the release's list files (UCF101: 1-based ``classInd.txt``, groups ``gNN`` whose
    test groups are the release's 1-7, 8-14, 15-21; HMDB51: ``0/1/2`` markers, some 0s).

``boxes.json`` keys follow the videos; ``synth_info.json`` records the layout and is
written last (the dataset is complete once it exists again).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

from momentlens.data import synth
from momentlens.data.check import _map
from momentlens.data.decode import open_video
from momentlens.data.layouts import load_split
from momentlens.utils import MomentlensError, atomic_path, write_json_atomic, write_text_atomic

LAYOUTS = ("mmit", "ssv2", "kinetics", "ucf101", "hmdb51")
# (FFmpeg encoder, container, options): VP9 as SSv2 ships it, MPEG-4 part 2 in AVI as
# UCF101 and HMDB51 ship it (xvid-like), H.264 mp4 for the rest.
CODECS = {
    "webm": ("libvpx-vp9", "webm", {"deadline": "realtime", "cpu-used": "8", "crf": "30",
                                    "b": "0", "row-mt": "1"}),
    "avi": ("mpeg4", "avi", {}),  # fixed quality through qscale, set in encode()
    "mp4": ("libx264", "mp4", {"crf": "20", "preset": "veryfast"}),
}


def _read_all(path: str) -> tuple[np.ndarray, float]:
    with open_video(path, threads=1) as reader:
        return reader.get_frames(list(range(reader.num_frames))), reader.fps


def encode(path: str | os.PathLike[str], frames: np.ndarray, fps: float, kind: str) -> None:
    """Write RGB uint8 frames ``(T, H, W, 3)`` with the codec of ``kind`` (a key of
    :data:`CODECS`), atomically."""
    import av

    codec, fmt, options = CODECS[kind]
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        if kind == "avi":
            stream.codec_context.qscale = 3  # fixed quality: MPEG-4 part 2 has no crf
        else:
            stream.options = options
        stream.thread_count = 1
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts, frame.time_base = i, 1 / rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def split_screen(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` and ``b`` (``(T, H, W, 3)``, H and W even) halved and side by side, centred
    vertically on a grey frame of the same size: both objects stay whole in view."""
    t = min(len(a), len(b))
    h, w = a.shape[1:3]
    out = np.full((t, h, w, 3), 128, dtype=np.uint8)
    for col, clip in ((0, a[:t]), (w // 2, b[:t])):
        small = clip.reshape(t, h // 2, 2, w // 2, 2, 3).mean(axis=(2, 4))
        out[:, h // 4: h // 4 + h // 2, col: col + w // 2] = np.round(small).astype(np.uint8)
    return out


def _job(job: tuple[str, str, str, str | None]) -> str:
    """One video of the conversion: ``(src, dst, kind, partner)``; ``kind`` ``move``
    renames, ``pair`` writes the split screen of src and partner, else re-encodes."""
    src, dst, kind, partner = job
    if kind == "move":
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        return dst
    frames, fps = _read_all(src)
    if kind == "pair":
        frames = split_screen(frames, _read_all(partner)[0])
        kind = "mp4"
    encode(dst, frames, fps, kind)
    return dst


def _csv(rows: list[list[object]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


# ----------------------------------------------------------------------------- per layout
# Each plan function returns (jobs, annotation files {relative name: text}, boxes key
# renames {old: new}, boxes transform {old key: "pair"}).


def _plan_mmit(out: Path, splits: dict) -> tuple:
    jobs, files, pairs = [], {}, {}
    for name, sp in splits.items():
        rows = []
        singles = [r for k, r in enumerate(sp.records) if k % 2 == 0]
        for k, rec in enumerate(sp.records):
            partner = None
            if k % 2 == 1:
                partner = next((r for r in singles[k // 2 + 1:] + singles
                                if r.label != rec.label), None)
            if partner is None:
                rows.append([rec.extra["rel"], rec.label])
                continue
            jobs.append((str(rec.path), str(rec.path), "pair", str(partner.path)))
            pairs[f"{name}/{rec.extra['rel']}"] = "pair"
            rows.append([rec.extra["rel"], rec.label, partner.label])
        files[synth.SPLITS[name]] = _csv(rows)
    return jobs, files, {}, pairs


def ssv2_template(cls: str) -> str:
    return f"{cls[:1].upper()}{cls[1:]} [something]"


def _plan_ssv2(out: Path, splits: dict) -> tuple:
    classes = splits["training"].classes
    labels = {ssv2_template(c).replace("[", "").replace("]", ""): str(i)
              for i, c in enumerate(classes)}
    jobs, files, renames, vid = [], {}, {}, 0
    for name, sp in splits.items():
        entries = []
        for rec in sp.records:
            vid += 1
            template = ssv2_template(classes[rec.label])
            entries.append({"id": str(vid), "label": template.replace("[something]", "a shape"),
                            "template": template, "placeholders": ["a shape"]})
            rel = f"20bn-something-something-v2/{vid}.webm"
            jobs.append((str(rec.path), str(out / rel), "webm", None))
            renames[f"{name}/{rec.extra['rel']}"] = rel
        stem = "train" if name == "training" else "validation"
        files[f"something-something-v2-{stem}.json"] = json.dumps(entries, indent=1)
    files["something-something-v2-labels.json"] = json.dumps(labels, indent=1)
    return jobs, files, renames, {}


def kinetics_label(cls: str) -> str:
    return f"{cls} (synthetic shape)"


def _plan_kinetics(out: Path, splits: dict) -> tuple:
    jobs, files, renames, n = [], {}, {}, 0
    header = ["label", "youtube_id", "time_start", "time_end", "split"]
    for name, sp in splits.items():
        short = "train" if name == "training" else "val"
        rows = [header]
        for rec in [*sp.records, None]:  # None: a listed video the copy lacks
            n += 1
            label = kinetics_label(sp.classes[(rec or sp.records[0]).label])
            start = (n * 7) % 290
            yid = f"synth{n:06d}"
            rows.append([label, yid, start, start + 10, short])
            if rec is None:
                continue
            clip = f"{yid}_{start:06d}_{start + 10:06d}.mp4"
            rel = f"{short}/{label}/{clip}" if name == "training" else f"{short}/{clip}"
            jobs.append((str(rec.path), str(out / rel), "move", None))
            renames[f"{name}/{rec.extra['rel']}"] = rel
        files[f"annotations/{short}.csv"] = _csv(rows)
    return jobs, files, renames, {}


def _pooled(splits: dict) -> dict[int, list[tuple[str, object]]]:
    """Class index -> [(old split, record)], training videos first."""
    by_class: dict[int, list] = {}
    for name, sp in splits.items():
        for rec in sp.records:
            by_class.setdefault(rec.label, []).append((name, rec))
    return by_class


def ucf_class(cls: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in cls.replace("+", " ").split())


def _plan_ucf101(out: Path, splits: dict) -> tuple:
    classes = [ucf_class(c) for c in splits["training"].classes]
    jobs, renames = [], {}
    lists: dict[str, list[str]] = {f"{k}list{s:02d}.txt": [] for k in ("train", "test")
                                   for s in (1, 2, 3)}
    for label, videos in sorted(_pooled(splits).items()):
        cls, clips = classes[label], {}
        for i, (name, rec) in enumerate(videos):
            group = (i % 3) * 7 + (i // 3) % 7 + 1  # test group of split i % 3 + 1
            clips[group] = clips.get(group, 0) + 1
            rel = f"{cls}/v_{cls}_g{group:02d}_c{clips[group]:02d}.avi"
            jobs.append((str(rec.path), str(out / "UCF-101" / rel), "avi", None))
            renames[f"{name}/{rec.extra['rel']}"] = f"UCF-101/{rel}"
            for s in (1, 2, 3):
                if 7 * (s - 1) < group <= 7 * s:
                    lists[f"testlist{s:02d}.txt"].append(rel)
                else:
                    lists[f"trainlist{s:02d}.txt"].append(f"{rel} {label + 1}")
    files = {f"ucfTrainTestlist/{k}": "".join(f"{x}\n" for x in sorted(v))
             for k, v in lists.items()}
    files["ucfTrainTestlist/classInd.txt"] = "".join(f"{i + 1} {c}\n"
                                                     for i, c in enumerate(classes))
    return jobs, files, renames, {}


def _plan_hmdb51(out: Path, splits: dict) -> tuple:
    classes = [c.replace("+", "_") for c in splits["training"].classes]
    jobs, files, renames = [], {}, {}
    for label, videos in sorted(_pooled(splits).items()):
        cls, lines = classes[label], {1: [], 2: [], 3: []}
        for i, (name, rec) in enumerate(videos):
            video = f"Synthetic_clip_{i:03d}_{cls}_f_cm_np1_fr_med_{i % 3}.avi"
            jobs.append((str(rec.path), str(out / cls / video), "avi", None))
            renames[f"{name}/{rec.extra['rel']}"] = f"{cls}/{video}"
            for s in (1, 2, 3):
                unused = i >= 3 and (i + s) % 5 == 0
                marker = 2 if i % 3 == s - 1 else 0 if unused else 1
                lines[s].append(f"{video} {marker} \n")  # the release's trailing space
        for s, rows in lines.items():
            files[f"testTrainMulti_7030_splits/{cls}_test_split{s}.txt"] = "".join(rows)
    return jobs, files, renames, {}


PLANS: dict[str, Callable[[Path, dict], tuple]] = {
    "mmit": _plan_mmit, "ssv2": _plan_ssv2, "kinetics": _plan_kinetics,
    "ucf101": _plan_ucf101, "hmdb51": _plan_hmdb51,
}


def _rewrite_boxes(out: Path, renames: dict[str, str], pairs: dict[str, str]) -> None:
    path = out / synth.BOXES_FILE
    if not path.is_file():
        return
    data = json.loads(path.read_text())
    half = data.get("height", 0) // 4
    videos = {}
    for key, boxes in data["videos"].items():
        if key in pairs:  # the first label's object, in the left half of the split screen
            boxes = [[x0 // 2, y0 // 2 + half, x1 // 2, y1 // 2 + half]
                     for x0, y0, x1, y1 in boxes]
        videos[renames.get(key, key)] = boxes
    write_json_atomic(path, {**data, "videos": videos}, indent=None)


def convert(out_dir: str | os.PathLike[str], layout: str, workers: int = 0) -> dict:
    """Rewrite the synthetic MiT-layout dataset at ``out_dir`` in ``layout`` (one of
    :data:`LAYOUTS`); returns a summary (``layout``, ``files``, ``videos``)."""
    if layout not in PLANS:
        raise MomentlensError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    out = Path(out_dir).resolve()
    info = synth.load_info(out)
    if info.get("layout", "mit") != "mit":
        raise MomentlensError(f"{out} is already in the {info['layout']} layout")
    splits = {name: load_split(out, name, "mit") for name in synth.SPLITS}
    (out / synth.INFO_FILE).unlink()  # incomplete until written again
    jobs, files, renames, pairs = PLANS[layout](out, splits)
    list(_map(_job, jobs, workers, f"synth {layout}", "video"))
    if layout != "mmit":
        for name in (*synth.SPLITS.values(), synth.CATEGORIES_FILE):
            (out / name).unlink(missing_ok=True)
        for name in synth.SPLITS:
            shutil.rmtree(out / name, ignore_errors=True)
    for rel, text in files.items():
        write_text_atomic(out / rel, text)
    _rewrite_boxes(out, renames, pairs)
    write_json_atomic(out / synth.INFO_FILE, {**info, "layout": layout})
    return {"layout": layout, "out_dir": str(out), "files": sorted(files),
            "videos": sum(len(sp) for sp in splits.values()), "two_label_videos": len(pairs)}


def describe(summary: dict) -> str:
    extra = (f", {summary['two_label_videos']} of them now showing two objects with two labels"
             if summary["layout"] == "mmit" else "")
    return (f"rewrote {summary['out_dir']} in the {summary['layout']} layout "
            f"({summary['videos']} videos{extra})\n  files: {', '.join(summary['files'])}")
