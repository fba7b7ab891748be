"""Decoding: real mp4 files written and read back, broken inputs, optional torchcodec."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from momentlens.data.decode import VideoDecodeError, VideoReader, open_video


@pytest.fixture
def broken(tmp_path, vids):
    return vids.write_broken_set(tmp_path / "b")


def test_pyav_metadata_and_frames(tmp_path, vids):
    path = vids.write_test_video(tmp_path / "v.mp4", 30, 32, 48)
    with open_video(path) as r:
        assert isinstance(r, VideoReader)
        assert (r.num_frames, r.size) == (30, (32, 48)) and r.fps == pytest.approx(30)
        out = r.get_frames([5, 1, 1, 29, 0])
    assert out.dtype == np.uint8 and out.shape == (5, 32, 48, 3)
    assert [vids.frame_id(f) for f in out] == [5, 1, 1, 29, 0]
    np.testing.assert_array_equal(out[1], out[2])


@pytest.mark.parametrize("gop", [None, 4])
def test_seek_gives_same_frames_as_sequential(tmp_path, vids, gop):
    path = vids.write_test_video(tmp_path / "v.mp4", 60, gop=gop)
    with open_video(path) as r:
        late = r.get_frames([40, 45, 59])  # far enough in to seek
        early = r.get_frames([0, 40])  # decoded from the start
    assert [vids.frame_id(f) for f in late] == [40, 45, 59]
    np.testing.assert_array_equal(late[0], early[1])


def test_seek_over_several_gaps(tmp_path, vids):
    path = vids.write_test_video(tmp_path / "v.mp4", 100, gop=4)
    with open_video(path) as r:
        out = r.get_frames([99, 5, 40, 70, 71, 40])
    assert [vids.frame_id(f) for f in out] == [99, 5, 40, 70, 71, 40]


def test_out_of_range_indices(tmp_path, vids):
    with open_video(vids.write_test_video(tmp_path / "v.mp4", 8)) as r:
        with pytest.raises(IndexError, match="outside 0..7"):
            r.get_frames([8])


@pytest.mark.parametrize("name,reason", [
    ("zero", "empty file"),
    ("truncated", "not a readable video container"),
    ("text", "not a readable video container"),
    ("audio", "no video stream"),
])
def test_unreadable_inputs_name_file_and_reason(broken, name, reason):
    with pytest.raises(VideoDecodeError) as info:
        open_video(broken[name])
    assert str(broken[name]) in str(info.value) and reason in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(VideoDecodeError, match="file not found"):
        open_video(tmp_path / "nope.mp4")


def test_one_frame_and_odd_size(broken, vids):
    with open_video(broken["one_frame"]) as r:
        assert r.num_frames == 1
        assert r.get_frames([0, 0, 0]).shape == (3, 32, 32, 3)
    with open_video(broken["odd"]) as r:
        assert r.size == (97, 173)
        out = r.get_frames([7, 3])
    assert out.shape == (2, 97, 173, 3) and [vids.frame_id(f) for f in out] == [7, 3]


def test_frame_folder_backend(tmp_path, vids):
    from PIL import Image

    folder = tmp_path / "v"
    folder.mkdir()
    for i, f in enumerate(vids.frames_for(5, 16, 24)):
        Image.fromarray(f).save(folder / f"image_{i + 1:05d}.jpg", quality=95)
    (folder / "fps").write_text("25\n")
    with open_video(folder) as r:
        assert (r.num_frames, r.size, r.fps) == (5, (16, 24), 25.0)
        assert [vids.frame_id(f) for f in r.get_frames([4, 0, 4])] == [4, 0, 4]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoDecodeError, match="no image_00001.jpg"):
        open_video(empty)


def test_unknown_backend(tmp_path):
    from momentlens.utils import MomentlensError

    with pytest.raises(MomentlensError, match="unknown decode backend"):
        open_video(tmp_path / "x.mp4", backend="opencv")


def test_torchcodec_matches_pyav(tmp_path, vids):
    pytest.importorskip("torchcodec", reason="optional backend torchcodec not installed")
    path = vids.write_test_video(tmp_path / "v.mp4", 20, gop=5)
    with open_video(path, "torchcodec") as tc, open_video(path, "pyav") as av:
        assert (tc.num_frames, tc.size) == (av.num_frames, av.size)
        idx = [19, 3, 3, 10]
        np.testing.assert_array_equal(tc.get_frames(idx), av.get_frames(idx))


# Display rotation (degrees counter-clockwise, FFmpeg's convention) -> np.rot90's k that
# shows the stored frames upright, as the ffmpeg command does: -90 (a portrait phone
# video) is a quarter turn clockwise.
ROTATIONS = {-90: -1, 90: 1, 180: 2, 0: 0}


@pytest.mark.parametrize("rotation", sorted(ROTATIONS))
def test_phone_video_with_a_display_rotation_comes_out_upright(tmp_path, vids, rotation):
    stored = vids.frames_for(6, 32, 48)  # landscape, bright green marker on the left
    path = vids.write_phone_video(tmp_path / "phone.mp4", stored, rotation)
    expected = np.stack([np.rot90(f, ROTATIONS[rotation]) for f in stored])
    with open_video(path) as r:
        assert r.size == expected.shape[1:3]
        out = r.get_frames([4, 0, 5])
        small = r.get_frames([1], size=(expected.shape[1] // 2, expected.shape[2] // 2))
    assert out.shape == (3, *expected.shape[1:])
    assert [vids.frame_id(f) for f in out] == [4, 0, 5]
    assert np.abs(out.astype(int) - expected[[4, 0, 5]]).mean() < 3
    assert small.shape == (1, expected.shape[1] // 2, expected.shape[2] // 2, 3)
    # where the marker went: -90 puts the stored left edge at the top
    green = out[1, ..., 1].astype(int) - out[1, ..., 0]
    edge = {-90: green[:4].mean(), 90: green[-4:].mean(), 180: green[:, -4:].mean(),
            0: green[:, :4].mean()}[rotation]
    assert edge > 100 and green.mean() < edge / 2


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    diff = np.abs(a.astype(int) - b)
    return diff.mean() < 0.5 and diff.max() <= 6  # 10-bit: rounding to 8 bits may differ


@pytest.mark.parametrize("rotation,pix_fmt", [(-90, "yuv420p"), (180, "yuv420p"),
                                               (-90, "yuv420p10le"), (0, "yuv420p10le")])
def test_phone_video_matches_the_ffmpeg_command_and_torchcodec(tmp_path, vids, rotation,
                                                               pix_fmt):
    # Independent readers that apply the display matrix: torchcodec and the ffmpeg
    # command (auto-rotation is its default); each runs where it is installed (make test
    # installs both). On 10-bit video the reader used to upsample chroma bilinearly (up
    # to 36 levels from both at colour edges). The ffmpeg command is left out for a
    # turned 10-bit video: it turns the YUV planes before converting, which moves the
    # chroma samples (32 levels from torchcodec and from us, and further from the
    # stored frames than either).
    rng = np.random.default_rng(0)
    noise = rng.integers(-20, 21, (4, 32, 48, 3))
    stored = np.clip(vids.frames_for(4, 32, 48).astype(int) + noise, 0, 255).astype(np.uint8)
    path = vids.write_phone_video(tmp_path / "phone.mp4", stored, rotation, pix_fmt)
    with open_video(path) as r:
        ours = r.get_frames(list(range(4)))
    checked = 0
    if shutil.which("ffmpeg") and not (rotation and pix_fmt != "yuv420p"):
        raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo",
                              "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
        assert _close(np.frombuffer(raw, np.uint8).reshape(ours.shape), ours)
        checked += 1
    try:
        import torchcodec.decoders  # noqa: F401
    except Exception:  # noqa: BLE001 - missing, or its FFmpeg libraries are
        pass
    else:
        with open_video(path, "torchcodec") as tc:
            assert tc.size == ours.shape[1:3]
            assert _close(tc.get_frames(list(range(4))), ours)
        checked += 1
    if not checked:
        pytest.skip("neither the ffmpeg command nor torchcodec is installed")


# (suffix, FFmpeg muxer, codec): each suffix of VIDEO_SUFFIXES beyond mp4/webm/avi/mkv/mov
CONTAINERS = [("3gp", "3gp", "libx264"), ("mts", "mpegts", "libx264"),
              ("m2ts", "mpegts", "libx264"), ("ts", "mpegts", "libx264"),
              ("mpg", "mpeg", "mpeg2video"), ("mpeg", "mpeg", "mpeg2video"),
              ("vob", "vob", "mpeg2video"), ("flv", "flv", "libx264"), ("wmv", "asf", "wmv2"),
              ("asf", "asf", "msmpeg4v2"), ("m4v", "mp4", "libx264")]


def test_a_folder_of_phone_camcorder_and_old_format_videos_is_found_and_read(tmp_path, vids):
    # A newcomer's folder: .3gp from an old phone, .mts from a camcorder, .ts recordings,
    # MPEG-2, Flash and Windows Media files; each a real file of that container.
    import av

    from momentlens.data.formats import VIDEO_SUFFIXES, find_videos

    clip = vids.frames_for(12, 32, 32)
    for ext, fmt, codec in CONTAINERS:
        with av.open(str(tmp_path / f"clip.{ext}"), "w", format=fmt) as out:
            s = out.add_stream(codec, rate=25, options={"qscale": "2"} if "h264" not in codec
                               else {"crf": "12"})
            s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
            for img in clip:
                for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(packet)
            for packet in s.encode():
                out.mux(packet)
    (tmp_path / "notes.txt").write_text("not a video\n")
    found = find_videos(tmp_path)
    assert sorted(p.suffix[1:] for p in found) == sorted(e for e, _, _ in CONTAINERS)
    assert {e for e, _, _ in CONTAINERS} <= {s[1:] for s in VIDEO_SUFFIXES}
    for path in found:
        with open_video(path) as r:
            assert r.num_frames == 12 and r.size == (32, 32), path
            assert [vids.frame_id(f) for f in r.get_frames([0, 7, 11])] == [0, 7, 11], path
