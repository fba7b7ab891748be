"""Where a stream's keyframes are, and which of them to seek to (PyAV reader).

Frame ``i`` of a video is the ``i``-th frame the decoder outputs when it decodes from
the start, i.e. the shown frame with the ``i``-th smallest presentation timestamp (pts).
:func:`scan_stream` demuxes the stream once (no decoding) and returns a
:class:`FrameMap`: the pts of every frame and which frames are keyframes, so a
decoded frame's index comes from its pts exactly, whatever the frame rate, B-frame
reordering or edit list.

Edit lists: a clip cut without re-encoding (``ffmpeg -ss T -c copy``, common for
Kinetics-style clips) keeps the packets from the keyframe before ``T`` and an edit list
that hides them. The demuxer marks those packets *discard*: they are decoded, for the
frames after them, but never output. They are not frames here: they get no index, and
the header's frame count, which includes them, is corrected from the container's index
(:func:`shown_frames`). A hidden keyframe stays a place to seek to, for the first shown
frame after it. Packets before the stream's first keyframe (in decode order) are hidden
too: a file cut at a packet that is not a keyframe and given no edit list (``-copyinkf``,
some recorders and segmenters) starts with frames that lack their reference, which the
decoder drops, as the ``ffmpeg`` command does.

:func:`plan_runs` then decides, for sorted wanted frames, where to seek:

    for each wanted frame ``w``, let ``k`` be the last keyframe at or before ``w``;
    if ``k`` lies after the current decode position (the next frame the decoder
    would give), seek to ``k``; otherwise decode forward.

A seek lands on a keyframe, and decoding from a keyframe gives the same frames as
decoding from the start (closed GOPs; frames of an open GOP that precede their
keyframe in display order are never wanted after such a seek and are skipped).
"""

from __future__ import annotations

import os
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FrameMap:
    """``index``: pts -> frame index; ``keyframes``: sorted frame indices of keyframes;
    ``seek_ts``: frame index of each keyframe -> the timestamp to seek to (its pts:
    FFmpeg's demuxers, mp4 included, seek by presentation time; seeking by an mp4
    keyframe's dts, which is smaller with B-frames, lands one keyframe early)."""

    index: dict[int, int]
    keyframes: list[int]
    seek_ts: dict[int, int]

    @property
    def num_frames(self) -> int:
        return len(self.index)

    def keyframe_at_or_before(self, frame: int) -> int:
        """The last keyframe index ``<= frame`` (0 when none: decode from the start)."""
        k = bisect_right(self.keyframes, frame) - 1
        return self.keyframes[k] if k >= 0 else 0


def keyframe_possible(stream: object, last: int) -> bool:
    """False when the container's own index (free: read at open) shows no keyframe
    other than the first one among the first ``last + 1`` packets in decode order, so
    that no seek can help for frames ``0..last``; True when it may (or when the index
    is missing or has discarded entries, and only a scan can tell).

    A keyframe's display position is never before its decode position, so a keyframe
    shown at or before frame ``last`` is among the first ``last + 1`` packets."""
    try:
        entries = stream.index_entries  # type: ignore[attr-defined]
        n = len(entries)
    except (AttributeError, TypeError):
        return True
    if n == 0:
        return True
    for i in range(min(n, last + 1)):
        entry = entries[i]
        if entry.is_discard:
            return True
        if i > 0 and entry.is_keyframe:
            return True
    return False


def hidden_flags(keyframe: Sequence[bool], discard: Sequence[bool]) -> list[bool]:
    """Per packet, in decode order: whether its frame is never shown (module doc): a
    discard packet, or one before the first keyframe (when there is a keyframe)."""
    first = next((i for i, k in enumerate(keyframe) if k), 0)
    return [d or i < first for i, d in enumerate(discard)]


def shown_pts(packets: Sequence[tuple[int, bool, bool]]) -> list[int]:
    """The pts of the packets whose frames are shown, of ``(pts, keyframe, discard)``
    packets in decode order (:func:`hidden_flags`)."""
    hidden = hidden_flags([k for _, k, _ in packets], [d for _, _, d in packets])
    return [p for (p, _, _), h in zip(packets, hidden) if not h]


def shown_frames(stream: object) -> int | None:
    """The number of frames a decoder outputs, from the container's index (free: read
    at open), when that index hides some packets (module doc); ``None`` when it hides
    none or there is no index: the header's count stands."""
    try:
        entries = stream.index_entries  # type: ignore[attr-defined]
        hidden = sum(hidden_flags([e.is_keyframe for e in entries],
                                  [e.is_discard for e in entries]))
        total = len(entries)
    except (AttributeError, TypeError):
        return None
    return total - hidden if hidden and total > hidden else None


def has_hidden_packets(path: str | os.PathLike[str]) -> bool:
    """Whether the container's index hides packets of the first video stream
    (:func:`shown_frames`); PyAV, demuxer only; False when it cannot be read."""
    import av

    try:
        with av.open(str(path)) as container:
            return shown_frames(container.streams.video[0]) is not None
    except Exception:  # noqa: BLE001 - the caller's reader reports unreadable files
        return False


def scan_stream(container: object, stream: object) -> FrameMap | None:
    """Demux ``stream`` once and map its frames; ``None`` when timestamps cannot index
    frames (a packet without pts, repeated pts) or the demuxer fails part-way: the
    caller then decodes from the start without seeking. Leaves the container at its
    end: seek before decoding."""
    packets: list[tuple[int, bool, bool]] = []  # pts, keyframe, discard; decode order
    try:
        # From the start: an earlier decode may have left the demuxer part-way through.
        container.seek(0)  # type: ignore[attr-defined]
        for packet in container.demux(stream):  # type: ignore[attr-defined]
            if packet.size <= 0:
                continue  # the demuxer's end-of-stream flush packet
            if packet.pts is None:
                return None
            packets.append((int(packet.pts), bool(packet.is_keyframe),
                            bool(getattr(packet, "is_discard", False))))
    except Exception:  # noqa: BLE001 - damaged files: fall back to plain decoding
        return None
    pts = shown_pts(packets)
    keys = [p for p, k, _ in packets if k]  # hidden keyframes too (module doc)
    if not pts or len(set(pts)) != len(pts):
        return None
    shown = sorted(pts)
    index = {p: i for i, p in enumerate(shown)}
    seek_ts: dict[int, int] = {}
    for p in keys:
        i = bisect_left(shown, p)  # the first shown frame at or after this keyframe
        if i < len(shown):
            seek_ts[i] = max(p, seek_ts.get(i, p))  # of two, the one nearer to frame i
    return FrameMap(index, sorted(seek_ts), seek_ts)


def plan_runs(want: Sequence[int], fmap: FrameMap) -> list[tuple[int, list[int]]]:
    """Split sorted, unique wanted frames into decode runs ``(start, frames)``: each
    run starts at keyframe ``start`` (a seek, except a run that starts at 0 from a fresh
    decoder) and decodes forward through its wanted ``frames``."""
    runs: list[tuple[int, list[int]]] = []
    nxt = 0  # the next frame the decoder would output without a seek
    for w in want:
        k = fmap.keyframe_at_or_before(w)
        if not runs or k > nxt:
            runs.append((k, [w]))
        else:
            runs[-1][1].append(w)
        nxt = w + 1
    return runs
