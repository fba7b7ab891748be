"""``momentlens serve`` over real HTTP on loopback: the API, bad uploads, files on disk,
shutdown on SIGTERM."""

from __future__ import annotations

import http.client
import wave
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from conftest import Server, predict_json, start_server, upload
from momentlens.data.encode import write_video


def test_health_models_and_openapi(server: Server) -> None:
    assert httpx.get(server.url + "/healthz").status_code == 200
    models = httpx.get(server.url + "/api/models").json()
    assert [r["name"] for r in models["runs"]] == ["2d", "3d"]
    assert models["runs"][0]["classes"] == ["ring", "triangle", "falling"]
    assert models["runs"][1]["input"]["sampler"] == "clip"
    schema = httpx.get(server.url + "/openapi.json").json()
    assert {"/api/predict", "/api/models", "/healthz"} <= set(schema["paths"])
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and 'id="file"' in page.text


def test_predict_matches_predict_json_and_serves_media(server: Server, runs, videos, capsys
                                                       ) -> None:
    r = upload(server.url, videos["short"], name="../../etc/passwd")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["video"] == "passwd"  # shown back, never used as a path
    for run in body["runs"]:
        assert run["top"] == predict_json(runs[run["name"]], videos["short"], capsys)
        assert run["top"][0]["class"] == "triangle" and len(run["top"]) == 3
        assert run["timeline"] is None  # 2 s: one window
        for kind, ctype in (("cam", "image/gif"), ("evidence", "image/png")):
            media = httpx.get(server.url + run["media"][kind])
            assert media.status_code == 200 and media.headers["content-type"] == ctype
            assert len(media.content) > 100
    # the upload is gone once scored; only the media stay, under random names
    files = [p.name for p in server.tmpdir.rglob("*") if p.is_file()]
    assert "upload.bin" not in files and not any("triangle" in f for f in files)


def test_long_video_gets_a_timeline(server: Server, videos) -> None:
    body = upload(server.url, videos["long"]).json()
    for run in body["runs"]:
        tl = run["timeline"]
        assert len(tl["windows"]) == 6  # 8 s, 3 s windows every second
        assert {w["top"][0]["class"] for w in tl["windows"]} == {"falling"}
        assert httpx.get(server.url + run["media"]["timeline"]).status_code == 200


def test_media_only_from_a_request_folder(server: Server, videos) -> None:
    url = upload(server.url, videos["short"]).json()["runs"][0]["media"]["cam"]
    folder = url.split("/")[2]
    for bad in ("/media/../../etc/passwd", f"/media/{folder}/..%2f..%2fetc%2fpasswd",
                f"/media/{folder}/upload.bin", "/media/AAAAAAAAAAAA/x.gif",
                f"/media/{folder}/{'A' * 16}.gif"):
        assert httpx.get(server.url + bad).status_code == 404, bad


def _text(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("hello, this is not a video\n" * 20)
    return tmp / "notes.txt"


def _empty(tmp: Path) -> Path:
    (tmp / "empty.mp4").write_bytes(b"")
    return tmp / "empty.mp4"


def _truncated(tmp: Path, videos: dict) -> Path:
    data = videos["short"].read_bytes()
    (tmp / "cut.mp4").write_bytes(data[: len(data) // 2])
    return tmp / "cut.mp4"


def _audio_only(tmp: Path) -> Path:
    path = tmp / "tone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((np.sin(np.arange(8000) / 5) * 8000).astype("<i2").tobytes())
    return path


def _huge_frames(tmp: Path) -> Path:
    path = tmp / "huge.mp4"  # a header declaring 4200 x 4200 frames (17.6 MP > 16.8 MP)
    write_video(path, np.zeros((1, 4200, 4200, 3), dtype=np.uint8), fps=1, preset="ultrafast")
    return path


@pytest.mark.parametrize(("case", "status", "message"), [
    ("empty", 400, "empty file: empty.mp4"),
    ("text", 415, "not a video: notes.txt"),
    ("truncated", 415, "not a video: cut.mp4"),
    ("audio_only", 415, "not a video: tone.wav (no video stream)"),
    ("huge_frames", 413, "frames too large: 4200x4200"),
    ("too_long", 413, "video too long: 40 s > limit 30 s"),
])
def test_bad_upload_is_a_4xx_with_one_line(server: Server, videos, tmp_path, case, status,
                                           message) -> None:
    make = {"empty": _empty, "text": _text, "audio_only": _audio_only,
            "huge_frames": _huge_frames}
    path = (videos["too_long"] if case == "too_long" else _truncated(tmp_path, videos)
            if case == "truncated" else make[case](tmp_path))
    r = upload(server.url, path)
    assert r.status_code == status, r.text
    assert r.json()["error"].startswith(message) and "\n" not in r.json()["error"]


def _raw_post(server: Server, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
    import json

    u = urlsplit(server.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("POST", "/api/predict", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_absurd_declared_size_is_refused_before_reading(server: Server) -> None:
    head = {"Content-Type": "multipart/form-data; boundary=xyz", "Content-Length": str(10**13)}
    status, body = _raw_post(server, head, b"--xyz\r\n")
    assert status == 413 and body["error"].startswith("upload too large: 9536743 MB > limit 1 MB")


def test_size_limit_holds_while_streaming(server: Server) -> None:
    """No Content-Length (chunked): the limit is found by counting the stream."""
    def body():
        yield (b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
               b"Content-Type: video/mp4\r\n\r\n")
        for _ in range(40):
            yield b"\0" * 65536  # 2.5 MB > 1 MB
        yield b"\r\n--xyz--\r\n"

    r = httpx.post(server.url + "/api/predict", content=body(), timeout=30,
                   headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 413 and r.json()["error"] == "upload too large: over the limit 1 MB"


@pytest.mark.parametrize(("headers", "body", "status"), [
    ({"Content-Type": "application/json"}, b"{}", 415),
    ({"Content-Type": "multipart/form-data; boundary=xyz"},
     b'--xyz\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--xyz--\r\n', 400),
    ({"Content-Type": "multipart/form-data; boundary=xyz"}, b"garbage without boundary", 400),
])
def test_malformed_requests_are_4xx(server: Server, headers, body, status) -> None:
    got, answer = _raw_post(server, headers, body)
    assert got == status and "error" in answer


def test_sigterm_shuts_down_cleanly_and_removes_its_folder(runs, videos, tmp_path) -> None:
    s = start_server(runs, tmp_path)
    assert upload(s.url, videos["short"]).status_code == 200
    mine = list(s.tmpdir.glob("momentlens-serve-*"))
    assert len(mine) == 1 and any(mine[0].iterdir())  # its private folder, with the media
    assert s.stop() == 0, s.log.read_text()
    assert not mine[0].exists()
    assert "stopped" in s.log.read_text()
