"""``VideoDataset``: record -> decode -> sample -> transform -> ``(clip, label, index)``.

Map-style (``__len__``), safe with several DataLoader workers. Nothing is decoded up
front; each item opens its video, decodes only the frames it needs and closes it.

Randomness: item ``i`` in epoch ``e`` draws from ``np.random.default_rng((seed, e, i))``,
so a run is reproducible whatever the number of workers; call :meth:`set_epoch` at the
start of every epoch (before the DataLoader iterator is created, so workers see it).

Unreadable videos are never fatal. The item is replaced by a **zero clip with the
item's own label and index** (deterministic; a black clip carries no signal, so it
hardly moves training, and evaluation can drop it), the reason is logged once per
video per process, and one JSON line ``{"index", "path", "reason", "epoch", "pid",
"time"}`` is appended to the quarantine file (``O_APPEND`` single writes: safe with
several worker processes). :meth:`failed_indices` reads that file, so the main
process sees failures that happened inside workers; without a ``quarantine_path`` a
private temporary file is used. A line that cannot be written (a full disk) is lost
with one warning per process; the item is still served. Videos already listed in an
existing quarantine file are not retried (they are served as zero clips at once) until
:meth:`~VideoDataset.recheck_quarantine` finds that they read again (``--resume``).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from momentlens.data.decode import open_video
from momentlens.data.layout import VideoRecord
from momentlens.data.sampling import (
    clip_indices,
    multi_clip_indices,
    multi_segment_indices,
    segment_indices,
)
from momentlens.data.transforms import ClipTransform, colour_augment, short_side_hw

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

SAMPLERS = ("segments", "clip")


class VideoDataset:
    """A map-style dataset of video clips (a ``torch.utils.data.Dataset`` by protocol).

    ``records``: from :func:`momentlens.data.layout.load_split` (``.records``).
    ``sampler``: ``"segments"`` (``frames`` equally spaced segment frames, the 2D
    model) or ``"clip"`` (``frames`` contiguous frames ``stride`` apart, the 3D model).
    ``size``: crop side in pixels; ``resize``: short side before cropping (default
    ``round(size * 128 / 112)``); ``crop``: training crop (``random``, ``multiscale``,
    ``center``). ``num_clips`` > 1 (evaluation): that many views spread over the video.
    ``colour_jitter`` / ``grayscale_p`` (training only): colour jitter strength and
    grey-scale probability of :func:`momentlens.data.transforms.colour_augment`, one
    draw per clip from the item's ``(seed, epoch, index)`` generator.
    ``decoder_resize``: resize the short side inside FFmpeg's RGB conversion (swscale
    bilinear) and cut the crop from that, instead of PIL resampling from the source;
    faster on large sources, pixels differ slightly (docs/benchmarks.md, "Data
    pipeline"); not for the ``multiscale`` crop.

    ``__getitem__(i)`` returns ``(clip, label, i)``: ``clip`` is a torch ``uint8``
    tensor ``(C, T, H, W)`` = ``(3, frames, size, size)`` with RGB pixels in
    ``[0, 255]`` (``(num_clips, C, T, H, W)`` when ``num_clips > 1``), ``label`` an
    ``int`` class index, ``i`` the item index.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        num_classes: int | None = None,
        sampler: str = "clip",
        frames: int = 16,
        stride: int = 1,
        train: bool = False,
        size: int = 112,
        resize: int | None = None,
        backend: str = "auto",
        seed: int = 0,
        quarantine_path: str | os.PathLike[str] | None = None,
        num_clips: int = 1,
        crop: str = "random",
        flip_p: float = 0.5,
        decode_threads: int = 1,
        colour_jitter: float = 0.0,
        grayscale_p: float = 0.0,
        decoder_resize: bool = False,
        multi_label: bool = False,
    ) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler={sampler!r}; choose from {SAMPLERS}")
        if num_clips < 1 or frames < 1 or stride < 1:
            raise ValueError("frames, stride and num_clips must be at least 1")
        if colour_jitter < 0 or not 0 <= grayscale_p <= 1:
            raise ValueError("colour_jitter must be >= 0 and grayscale_p in [0, 1]")
        if multi_label and not num_classes:
            raise ValueError("multi_label needs num_classes (the length of the target)")
        self.colour_jitter, self.grayscale_p = float(colour_jitter), float(grayscale_p)
        self.multi_label = bool(multi_label)
        self.records = list(records)
        self.num_classes = num_classes
        self.sampler, self.frames, self.stride = sampler, frames, stride
        self.train, self.num_clips = train, num_clips
        self.backend, self.seed, self.epoch = backend, seed, 0
        self.decode_threads, self.decoder_resize = decode_threads, bool(decoder_resize)
        self.transform = ClipTransform(size=size, resize=resize, train=train, crop=crop,
                                       flip_p=flip_p)
        self.size = size
        if quarantine_path is None:
            fd, name = tempfile.mkstemp(prefix="momentlens-quarantine-", suffix=".jsonl")
            os.close(fd)
            quarantine_path = name
            # A private file goes with the dataset; loader workers hold copies of the
            # dataset, so only the process that made the file removes it.
            weakref.finalize(self, _remove_own_file, name, os.getpid())
        self.quarantine_path = Path(quarantine_path)
        self._known_bad = {e["path"] for e in self._read_quarantine()}
        self._logged: set[str] = set()
        self._unrecorded = 0  # quarantine lines that could not be written (a full disk)
        self.failed: set[int] = set()  # failures seen in *this* process

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds per-item randomness (call before each epoch)."""
        self.epoch = int(epoch)

    # ------------------------------------------------------------------ sampling

    def _indices(self, num_frames: int, rng: np.random.Generator) -> list[np.ndarray]:
        if self.num_clips > 1:
            if self.sampler == "segments":
                return multi_segment_indices(num_frames, self.frames, self.num_clips)
            return multi_clip_indices(num_frames, self.frames, self.stride, self.num_clips)
        if self.sampler == "segments":
            return [segment_indices(num_frames, self.frames, self.train, rng)]
        return [clip_indices(num_frames, self.frames, self.stride, self.train, rng)]

    def _load(self, rec: VideoRecord, rng: np.random.Generator) -> np.ndarray:
        """uint8 ``(N, T, size, size, 3)`` for the ``N`` views of one video."""
        with open_video(rec.path, self.backend, threads=self.decode_threads) as reader:
            views = self._indices(reader.num_frames, rng)
            src_hw, size = self._decode_size(tuple(reader.size))
            frames = reader.get_frames(np.concatenate(views), size=size)
        n = len(views[0])
        out = []
        for v in range(len(views)):
            # Views share the item's rng: training crops differ per view, eval is fixed.
            view = self.transform(frames[v * n:(v + 1) * n], rng, src_hw=src_hw)
            if self.train:  # colour augmentation, training only (no draws when off)
                view = colour_augment(view, rng, self.colour_jitter, self.grayscale_p)
            out.append(view)
        return np.stack(out)

    def _decode_size(self, src_hw: tuple[int, int]
                     ) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """``(src_hw, size)`` for a decoder that resizes to ``size``; ``(None, None)``
        to decode at the source size (the transform then resamples, or only crops)."""
        tf = self.transform
        if not self.decoder_resize or (tf.train and tf.crop == "multiscale"):
            return None, None
        size = short_side_hw(src_hw, int(tf.resize))
        return (None, None) if size == src_hw else (src_hw, size)

    def eval_views(self, index: int, centres: Sequence[float] = ()
                   ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, float]:
        """Item ``index`` as evaluation sees it (``train=False``), with what is needed to
        put model outputs back onto the video (class activation maps).

        ``centres``: positions in ``[0, 1]`` of the video (0 = first frame, 1 = last); for
        each, one more view of ``frames`` frames ``stride`` apart centred on that frame
        (segment sampler: the frame alone), clamped to the video, decoded in the same pass.
        Returns ``(clips, views, source, fps)``: per view, the dataset's own first, a uint8
        ``(T_v, size, size, 3)`` clip and its int64 ``(T_v,)`` source frame indices; the
        decoded frames uint8 ``(sum T_v, H, W, 3)`` in the same order (their crop is
        ``self.transform.geometry(source.shape[1:3])``); frames per second (0 if unknown).
        An unreadable video raises: there is nothing to map, so no zero clip.
        """
        rng = np.random.default_rng((self.seed, self.epoch, index))
        with open_video(self.records[index].path, self.backend,
                        threads=self.decode_threads) as reader:
            n = reader.num_frames
            views = list(self._indices(n, rng))
            offsets = (np.zeros(1, dtype=np.int64) if self.sampler == "segments"
                       else self.stride * (np.arange(self.frames) - self.frames // 2))
            for c in np.round(np.asarray(centres, dtype=np.float64) * (n - 1)).astype(np.int64):
                views.append(np.clip(c + offsets, 0, n - 1))
            source = reader.get_frames(np.concatenate(views))
            fps = float(reader.fps)
        edges = np.cumsum([0] + [len(v) for v in views])
        clips = [self.transform(source[a:b]) for a, b in zip(edges[:-1], edges[1:])]
        return clips, views, source, fps

    def target(self, index: int) -> int | torch.Tensor:
        """Item ``index``'s label: its class index, or (``multi_label``) its float32
        multi-hot vector ``(num_classes,)``."""
        import torch

        rec = self.records[index]
        if not self.multi_label:
            return int(rec.label)
        hot = torch.zeros(int(self.num_classes or 0), dtype=torch.float32)
        hot[list(rec.labels)] = 1.0
        return hot

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | torch.Tensor, int]:
        import torch

        index = int(index)
        rec = self.records[index]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        key = str(rec.path)
        if key in self._known_bad:
            self.failed.add(index)
            views = None
        else:
            try:
                views = self._load(rec, rng)
            except Exception as exc:  # never fatal: quarantine and substitute
                self._quarantine(index, rec, exc)
                views = None
        if views is None:
            shape = (self.num_clips, self.frames, self.size, self.size, 3)
            views = np.zeros(shape, dtype=np.uint8)
        # (N, T, H, W, C) -> (N, C, T, H, W) in numpy: one copy, no torch kernels
        # (torch ops on tiny tensors cost milliseconds when its threads are contended).
        clips = torch.from_numpy(np.ascontiguousarray(views.transpose(0, 4, 1, 2, 3)))
        return (clips if self.num_clips > 1 else clips[0]), self.target(index), index

    # ------------------------------------------------------------------ failures

    def _quarantine(self, index: int, rec: VideoRecord, exc: BaseException) -> None:
        reason = str(exc) if str(rec.path) in str(exc) else f"{rec.path}: {exc}"
        self.failed.add(index)
        if str(rec.path) not in self._logged:
            self._logged.add(str(rec.path))
            log.warning("unreadable video replaced by a zero clip: %s", reason)
        entry = {"index": index, "path": str(rec.path), "reason": reason,
                 "epoch": self.epoch, "pid": os.getpid(), "time": round(time.time(), 3)}
        line = (json.dumps(entry) + "\n").encode("utf-8")
        try:
            self.quarantine_path.parent.mkdir(parents=True, exist_ok=True)
            # O_APPEND + one write: lines from several workers never interleave.
            fd = os.open(self.quarantine_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if os.write(fd, line) != len(line):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            finally:
                os.close(fd)
        except OSError as exc:  # a full disk: the record is lost, not the run
            if not self._unrecorded:
                log.warning("cannot record unreadable videos in %s (%s); they are still "
                            "replaced by zero clips, but the epoch's count of unreadable "
                            "videos may miss them", self.quarantine_path,
                            exc.strerror or exc)
            self._unrecorded += 1

    def _read_quarantine(self) -> list[dict]:
        if not self.quarantine_path.is_file():
            return []
        entries = []
        for line in self.quarantine_path.read_text(encoding="utf-8").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line after a crash
        return entries

    def recheck_quarantine(self, rewrite: bool = True) -> list[str]:
        """Try each quarantined video of this dataset again; those that read are used
        from now on and, with ``rewrite``, leave the quarantine file (rewritten
        atomically; call it while no loader workers run). Returns their paths."""
        from momentlens.utils import write_text_atomic

        rng = np.random.default_rng((self.seed, self.epoch, 0))
        recovered = []
        for rec in self.records:
            if str(rec.path) in self._known_bad:
                try:
                    self._load(rec, rng)
                except Exception:  # noqa: BLE001 - still unreadable, whatever the reason
                    continue
                recovered.append(str(rec.path))
                log.info("quarantined video reads again and is used: %s", rec.path)
        self._known_bad -= set(recovered)
        if recovered and rewrite:
            keep = [e for e in self._read_quarantine() if e.get("path") not in recovered]
            write_text_atomic(self.quarantine_path, "".join(json.dumps(e) + "\n" for e in keep))
        return recovered

    def failed_indices(self, epoch: int | None = None) -> set[int]:
        """Indices whose video could not be read (in any worker), optionally only in
        ``epoch``; includes videos quarantined by an earlier run that were served as
        zero clips here."""
        paths = {str(r.path): i for i, r in enumerate(self.records)}
        out = set(self.failed)
        for e in self._read_quarantine():
            if (epoch is None or e.get("epoch") == epoch) and e.get("path") in paths:
                out.add(paths[e["path"]])
        if epoch is None:
            out |= {paths[p] for p in self._known_bad if p in paths}
        return out

    def failure_report(self, epoch: int | None = None) -> str:
        """One line for the end of an epoch, e.g. ``"3 of 1000 videos unreadable ..."``."""
        n = len(self.failed_indices(epoch))
        return (f"{n} of {len(self)} videos unreadable (zero clips used); "
                f"see {self.quarantine_path}")


def _remove_own_file(path: str, owner_pid: int) -> None:
    if os.getpid() == owner_pid:
        Path(path).unlink(missing_ok=True)
