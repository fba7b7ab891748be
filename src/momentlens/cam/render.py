"""Pictures of class activation maps (:class:`~momentlens.cam.video.VideoCAM`): overlays,
animated GIF frames, contact sheet, class evidence over time (PNG and CSV). Everything
here returns pixels or bytes; the ``momentlens cam`` command writes them
(:mod:`momentlens.commands.cam`), the report's gallery is :mod:`momentlens.cam.gallery`.
Plots use matplotlib's object API (``Figure`` + ``FigureCanvasAgg``), never the global
``pyplot`` state or ``matplotlib.use``.

Colours: the map of one class over one video has one scale, the min-max range over
all its frames (the ``jet`` colour map, red = strongest), so a frame without
evidence looks cold instead of being stretched to full range. Frames are RGB ``uint8 (H, W, 3)``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np

from momentlens.cam.video import VideoCAM

DISPLAY_MIN_SIDE = 256  # overlays are enlarged to this so the prediction text stays legible
SHEET_MAX_COLUMNS = 8  # a 16-frame contact sheet wraps into two bands instead of one wide strip


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


def gif_bytes(frames: Sequence[np.ndarray], fps: float) -> bytes:
    """An endlessly looping animated GIF of ``uint8 (H, W, 3)`` frames at ``fps``."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=round(1000 / fps), loop=0, disposal=1)
    return buf.getvalue()


def png_bytes(img: np.ndarray) -> bytes:
    """PNG of a ``uint8 (H, W, 3)`` image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def contact_sheet(rows: Sequence[tuple[str, Sequence[np.ndarray]]], cell_height: int = 112,
                  label_width: int = 150, max_columns: int = SHEET_MAX_COLUMNS) -> np.ndarray:
    """Rows of equally sized images with a label on the left -> ``uint8 (H, W, 3)`` sheet.

    Rows longer than ``max_columns`` images wrap: the sheet shows every row's first
    ``max_columns`` images, then every row's next ones (a band per ``max_columns``), so a
    16-frame map stays about as wide as a screen.
    """
    from PIL import Image, ImageDraw

    cells = [[_resize(img, cell_height) for img in imgs] for _, imgs in rows]
    cell_w = max(c.shape[1] for r in cells for c in r)
    ncol = min(max(len(r) for r in cells), max_columns)
    bands = math.ceil(max(len(r) for r in cells) / ncol)
    pad = 4
    lines = [(label, imgs[b * ncol:(b + 1) * ncol]) for b in range(bands)
             for (label, _), imgs in zip(rows, cells)]
    sheet = Image.new("RGB", (label_width + ncol * (cell_w + pad),
                              len(lines) * (cell_height + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (label, imgs) in enumerate(lines):
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
    sliding = bool(curves) and curves[0].sliding
    ax.set_ylabel("class score of the window\ncentred on the frame" if sliding
                  else "class score of the time slice")
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
