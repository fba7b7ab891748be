"""Pictures of class activation maps: overlays, GIF / MP4, contact sheet, evidence
curve, the ``momentlens cam`` output folder and the report's gallery.

Colours: the map of one class over one video has one scale, the min-max range over
all its frames (the ``jet`` colour map, red = strongest), so a frame without
evidence looks cold instead of being stretched to full range. Frames are RGB ``uint8 (H, W, 3)``.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from momentlens.analysis.cam import VideoCAM
from momentlens.utils import atomic_path, write_bytes_atomic, write_json_atomic, write_text_atomic

DISPLAY_MIN_SIDE = 256  # overlays are enlarged to this so the prediction text stays legible


# ----------------------------------------------------------------------------- pixels


def heat_colors(hm: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``(H, W)`` values on ``[lo, hi]`` to ``uint8 (H, W, 3)`` jet colours."""
    import matplotlib

    scaled = np.clip((np.asarray(hm, dtype=np.float64) - lo) / max(hi - lo, 1e-12), 0, 1)
    rgba = matplotlib.colormaps["jet"](scaled)
    return (rgba[..., :3] * 255 + 0.5).astype(np.uint8)


def overlay(frame: np.ndarray, hm: np.ndarray, lo: float, hi: float, alpha: float = 0.45
            ) -> np.ndarray:
    """Blend the heat map ``(H, W)`` over ``frame`` ``uint8 (H, W, 3)``."""
    heat = heat_colors(hm, lo, hi).astype(np.float32)
    out = frame.astype(np.float32) * (1 - alpha) + heat * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _resize(img: np.ndarray, height: int) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    width = max(2, 2 * round(w * height / h / 2))  # even, for yuv420p video
    return np.asarray(Image.fromarray(img).resize((width, height), Image.BILINEAR))


def _display_height(h: int, w: int) -> int:
    """Even height that makes the short side at least ``DISPLAY_MIN_SIDE``."""
    scale = max(1.0, DISPLAY_MIN_SIDE / min(h, w))
    return 2 * round(h * scale / 2)


def annotate(img: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """Write ``lines`` in the top-left corner on a dark translucent box."""
    from PIL import Image, ImageDraw, ImageFont

    pil = Image.fromarray(img).convert("RGBA")
    layer = Image.new("RGBA", pil.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = ImageFont.load_default()
    line_h = 12
    width = max((draw.textlength(s, font=font) for s in lines), default=0)
    draw.rectangle([0, 0, int(width) + 8, line_h * len(lines) + 6], fill=(0, 0, 0, 150))
    for i, s in enumerate(lines):
        draw.text((4, 3 + i * line_h), s, fill=(255, 255, 255, 255), font=font)
    return np.asarray(Image.alpha_composite(pil, layer).convert("RGB"))


def value_range(*cams: VideoCAM) -> tuple[float, float]:
    """One colour scale for all frames of the given maps."""
    vals = np.concatenate([c.heatmaps.reshape(-1) for c in cams])
    return float(vals.min()), float(vals.max())


def overlay_frames(cam: VideoCAM, topk: int = 5) -> list[np.ndarray]:
    """Display frames: map overlaid, enlarged, with the top-``topk`` predictions written."""
    lo, hi = value_range(cam)
    h, w = cam.heatmaps.shape[1:]
    height = _display_height(h, w)
    head = [f"CAM: {cam.class_name}"] + [f"{i + 1}. {n} {p:.3f}"
                                         for i, (n, p) in enumerate(cam.topk(topk))]
    out = []
    for frame, hm, fi, t in zip(cam.frames, cam.heatmaps, cam.frame_indices, cam.times):
        img = _resize(overlay(frame, hm, lo, hi), height)
        out.append(annotate(img, head + [f"frame {int(fi)}  {t:.2f} s"]))
    return out


def playback_fps(cam: VideoCAM) -> float:
    """Playback rate of the sampled frames: real time, bounded to 1..30 frames/s."""
    if cam.fps <= 0 or len(cam.frame_indices) < 2:
        return 4.0
    gap = float(np.median(np.diff(cam.frame_indices))) or 1.0
    return float(np.clip(cam.fps / gap, 1.0, 30.0))


def write_gif(path: str | os.PathLike[str], frames: Sequence[np.ndarray], fps: float) -> None:
    """An endlessly looping animated GIF, written atomically."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=round(1000 / fps), loop=0, disposal=1)


def _png(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def contact_sheet(rows: Sequence[tuple[str, Sequence[np.ndarray]]], cell_height: int = 112,
                  label_width: int = 150) -> np.ndarray:
    """Rows of equally sized images with a label on the left -> ``uint8`` sheet."""
    from PIL import Image, ImageDraw

    cells = [[_resize(img, cell_height) for img in imgs] for _, imgs in rows]
    cell_w = max(c.shape[1] for r in cells for c in r)
    ncol = max(len(r) for r in cells)
    pad = 4
    sheet = Image.new("RGB", (label_width + ncol * (cell_w + pad), len(rows) * (cell_height + pad)),
                      (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, ((label, _), imgs) in enumerate(zip(rows, cells)):
        y = i * (cell_height + pad)
        for j, line in enumerate(_wrap(label, 22)):
            draw.text((4, y + 4 + 12 * j), line, fill=(0, 0, 0))
        for j, img in enumerate(imgs):
            sheet.paste(Image.fromarray(img), (label_width + j * (cell_w + pad), y))
    return np.asarray(sheet)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


def cam_rows(main: VideoCAM, others: Sequence[tuple[str, VideoCAM]] = ()
             ) -> list[tuple[str, list[np.ndarray]]]:
    """Contact-sheet rows: the frames, then one overlay row per map. Each map has its
    own colour scale over its frames (class maps differ by large offsets, so a shared
    scale would paint each row one flat colour)."""
    cams = [main] + [c for _, c in others]
    rows = [("frames " + " ".join(str(int(i)) for i in main.frame_indices), list(main.frames))]
    labels = [f"CAM {main.class_name} (p={main.probs[main.class_index]:.2f})"]
    labels += [f"{tag}: {c.class_name} (p={c.probs[c.class_index]:.2f})" for tag, c in others]
    for label, cam in zip(labels, cams):
        lo, hi = value_range(cam)
        rows.append((label, [overlay(f, hm, lo, hi) for f, hm in zip(cam.frames, cam.heatmaps)]))
    return rows


def evidence_png(curves: Sequence[VideoCAM], title: str = "") -> bytes:
    """Class evidence over time (one line per map) as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for cam in curves:
        x = cam.times if cam.fps > 0 else cam.frame_indices
        ax.plot(x, cam.evidence, marker="o", label=cam.class_name)
    ax.set_xlabel("time (s)" if curves and curves[0].fps > 0 else "frame")
    ax.set_ylabel("class score of the time slice")
    ax.set_title(title or "class evidence over time", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def evidence_csv(main: VideoCAM, others: Sequence[tuple[str, VideoCAM]] = ()) -> str:
    """CSV: ``frame_index,time_s,evidence`` (the mapped class) + one column per other map."""
    head = ["frame_index", "time_s", "evidence"] + [f"evidence_{tag}" for tag, _ in others]
    lines = [",".join(head)]
    for i, (fi, t) in enumerate(zip(main.frame_indices, main.times)):
        vals = [f"{main.evidence[i]:.6g}"] + [f"{c.evidence[i]:.6g}" for _, c in others]
        lines.append(",".join([str(int(fi)), f"{t:.4f}", *vals]))
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the command


def write_cam_outputs(out_dir: str | os.PathLike[str], main: VideoCAM,
                      others: Sequence[tuple[str, VideoCAM]] = (),
                      true_class: str | None = None) -> dict[str, str]:
    """Write the ``momentlens cam`` folder; returns ``{kind: file name}``.

    ``main``: the map shown in the GIF / MP4 (top-1 or ``--class``); ``others``:
    ``(tag, map)`` pairs for further rows (``top2`` ..., ``true``).
    """
    from momentlens.data.encode import write_video

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"gif": "cam.gif", "mp4": "cam.mp4", "sheet": "contact_sheet.png",
             "evidence_png": "evidence.png", "evidence_csv": "evidence.csv", "npz": "cam.npz",
             "json": "cam.json"}
    shown = overlay_frames(main)
    fps = playback_fps(main)
    write_gif(out / files["gif"], shown, fps)
    write_video(out / files["mp4"], np.stack(shown), fps=fps)
    write_bytes_atomic(out / files["sheet"], _png(contact_sheet(cam_rows(main, others))))
    write_bytes_atomic(out / files["evidence_png"],
                       evidence_png([main] + [c for _, c in others], title=Path(main.video).name))
    write_text_atomic(out / files["evidence_csv"], evidence_csv(main, others))
    arrays: dict[str, Any] = {
        "heatmaps": main.heatmaps.astype(np.float32), "frame_indices": main.frame_indices,
        "class_index": np.int64(main.class_index), "class_name": np.str_(main.class_name),
        "probs": main.probs, "evidence": main.evidence,
    }
    for tag, cam in others:
        arrays[f"heatmaps_{tag}"] = cam.heatmaps.astype(np.float32)
        arrays[f"class_index_{tag}"] = np.int64(cam.class_index)
    with atomic_path(out / files["npz"]) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    write_json_atomic(out / files["json"], {
        "video": main.video, "class_name": main.class_name, "class_index": main.class_index,
        "true_class": true_class,
        "top5": [{"class": n, "prob": round(p, 6)} for n, p in main.topk(5)],
        "frame_indices": [int(i) for i in main.frame_indices], "fps": main.fps,
        "maps": {tag: cam.class_name for tag, cam in others}, "files": files,
    })
    return files


def run_cam(model_path: str | os.PathLike[str], video: str | os.PathLike[str],
            out_dir: str | os.PathLike[str], class_name: str | None = None, topk: int = 1,
            frames: int | None = None, true_class: str | None = None,
            device: str = "auto") -> dict[str, Any]:
    """``momentlens cam``: load a model, map one video, write the folder (module doc)."""
    from momentlens.analysis.cam import class_index, true_class_from_path, video_cams
    from momentlens.engine.checkpoint import load_model
    from momentlens.engine.runtime import resolve_device
    from momentlens.utils import MomentlensError

    if topk < 1:
        raise MomentlensError(f"--topk must be at least 1, got {topk}")
    model, meta = load_model(model_path, resolve_device(device))
    classes = list(meta["classes"])
    if class_name is not None:
        class_index(meta, class_name)  # an unknown name fails before any decoding
    if true_class is not None:
        class_index(meta, true_class)
    else:
        true_class = true_class_from_path(video, classes)
    wanted = ([class_name] if class_name is not None else []) + \
        ([true_class] if true_class is not None else [])
    cams = video_cams(model, meta, video, class_names=wanted,
                      topk=1 if class_name is not None else topk, frames=frames)
    if class_name is not None:
        main, others = cams[1], [("top1", cams[0])]
    else:
        main, others = cams[0], [(f"top{i + 2}", c) for i, c in enumerate(cams[1:topk])]
    if true_class is not None:
        others.append(("true", cams[-1]))
    files = write_cam_outputs(out_dir, main, others, true_class)
    return {"files": files, "class_name": main.class_name, "true_class": true_class,
            "top5": main.topk(5), "frame_indices": main.frame_indices.tolist()}


# ----------------------------------------------------------------------------- gallery


@dataclass
class GalleryItem:
    """One video of the gallery: the map of its predicted class and, when the
    prediction is wrong, of its true class."""

    true_class: str
    predicted: VideoCAM
    true: VideoCAM | None = None

    @property
    def correct(self) -> bool:
        return self.predicted.class_name == self.true_class


def _strip(item: GalleryItem, max_frames: int) -> bytes:
    pick = np.unique(np.round(np.linspace(0, len(item.predicted.frame_indices) - 1,
                                          min(max_frames, len(item.predicted.frame_indices))))
                     .astype(int))

    def sub(cam: VideoCAM) -> VideoCAM:
        return VideoCAM(cam.heatmaps[pick], cam.frame_indices[pick], cam.class_index,
                        cam.class_name, cam.probs, cam.frames[pick], cam.evidence[pick],
                        cam.classes, cam.fps, cam.video)

    others = [("true", sub(item.true))] if item.true is not None and not item.correct else []
    rows = cam_rows(sub(item.predicted), others)
    return _png(contact_sheet(rows, cell_height=80, label_width=130))


def gallery_html(items: Sequence[GalleryItem], max_frames: int = 6) -> str:
    """HTML fragment: correct and wrong predictions with their CAMs (base64 PNG strips),
    captioned "true: X, predicted: Y (p)". For a wrong prediction the strip also shows
    the true class's map: the paper's Figure 6, "wrong classification but great
    localization"."""
    parts = []
    for title, group in (("Correct predictions", [i for i in items if i.correct]),
                         ("Wrong predictions", [i for i in items if not i.correct])):
        if not group:
            continue
        parts.append(f"<h3>{html.escape(title)}</h3>")
        for item in group:
            p = item.predicted
            caption = (f"true: {item.true_class}, predicted: {p.class_name} "
                       f"({p.probs[p.class_index]:.2f})")
            name = html.escape(Path(p.video).name)
            data = base64.b64encode(_strip(item, max_frames)).decode("ascii")
            parts.append(
                f'<figure class="cam-gallery"><img src="data:image/png;base64,{data}" '
                f'alt="{name}"><figcaption>{html.escape(caption)} &mdash; {name}'
                "</figcaption></figure>")
    return "\n".join(parts)
