"""20 concurrent uploads against ``--workers 1``: every answer is 200 or 503 (with
``Retry-After``), every 200 names the right class, and it all ends in bounded time."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from conftest import Server, upload


def test_twenty_concurrent_uploads_are_200_or_503(server: Server, videos) -> None:
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: upload(server.url, videos["short"], timeout=60),
                                range(20)))
    elapsed = time.monotonic() - start
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 503}, codes
    assert codes.count(200) >= 1
    for r in answers:
        if r.status_code == 200:
            assert [run["top"][0]["class"] for run in r.json()["runs"]] == ["triangle"] * 2
        else:
            assert r.headers["retry-after"] and r.json()["error"].startswith("busy")
    assert elapsed < 60, elapsed
    assert server.proc.poll() is None  # still serving
    assert upload(server.url, videos["short"]).status_code == 200
