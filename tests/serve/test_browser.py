"""The page in real headless Chromium (the system one, driven by Playwright through
``executable_path``; nothing is downloaded): upload through the file input, wait for both
columns, check bars, CAM media and the top-1 against ``predict --json``, screenshot."""

from __future__ import annotations

import pytest

from conftest import Server, predict_json

pytestmark = pytest.mark.browser


def test_page_shows_both_runs_side_by_side(server: Server, runs, videos, tmp_path, capsys
                                           ) -> None:
    import shutil

    sync_api = pytest.importorskip("playwright.sync_api")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "headless Chromium is required (make test sets it up)"
    expected = {name: predict_json(run, videos["short"], capsys)[0]["class"]
                for name, run in runs.items()}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=exe, headless=True,
            args=["--no-sandbox", "--disable-gpu"], viewport={"width": 1000, "height": 900})
        try:
            page = browser.new_page()
            page.goto(server.url + "/")
            page.wait_for_function("document.getElementById('models').textContent"
                                   ".includes('colour3d')")
            page.set_input_files("#file", str(videos["short"]))
            page.wait_for_selector("body[data-state=done]", timeout=60_000)
            page.wait_for_function("[...document.querySelectorAll('img')].every("
                                   "i => i.complete && i.naturalWidth > 0)", timeout=30_000)
            columns = page.query_selector_all(".run")
            assert [c.get_attribute("data-run") for c in columns] == ["2d", "3d"]
            for col in columns:
                name = col.get_attribute("data-run")
                assert len(col.query_selector_all(".bar")) == 3  # top-5 of 3 classes
                top1 = col.query_selector('.bar[data-rank="1"]').get_attribute("data-class")
                assert top1 == expected[name]
                cam = col.query_selector("img.cam")
                assert cam.get_attribute("src").startswith("/media/")
                assert col.query_selector("img.evidence") is not None
            assert page.inner_text("#error") == ""
            page.screenshot(path=str(tmp_path / "serve.png"), full_page=True)
            page.set_input_files("#file", str(_text_file(tmp_path)))
            page.wait_for_selector("body[data-state=error]", timeout=30_000)
            assert page.inner_text("#error") == "not a video: notes.txt"
        finally:
            browser.close()
    assert (tmp_path / "serve.png").stat().st_size > 10_000


def _text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a video\n")
    return path
