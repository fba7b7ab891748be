"""The HTML report: content checks, and rendering in real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from momentlens.analysis.report import format_top5, render_report, write_report
from momentlens.cli import main

# Appended to a copy of the page by the test only (the report itself has no scripts):
# after the load event it records how many images failed to decode.
PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = document.images, broken = 0;
  for (var i = 0; i < imgs.length; i++) {
    if (!imgs[i].complete || imgs[i].naturalWidth === 0) broken++;
  }
  document.body.setAttribute('data-image-count', imgs.length);
  document.body.setAttribute('data-broken-images', broken);
});
</script>"""

BROKEN_IMG = '<img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB" alt="broken">'


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("headless Chromium is required for the browser tests but was not found on "
                    "PATH; install it (Debian: apt-get install chromium) or deselect with "
                    "-m 'not browser'")
    return exe


def render_in_chromium(page: Path) -> str:
    """The DOM of ``page`` after the load event, with the image probe's attributes."""
    probed = page.with_name(page.stem + ".probe.html")
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                      encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
               "--dump-dom", probed.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


class _Tables(HTMLParser):
    """Collects tables (by class/id) with their rows of cell text, and the body attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.body: dict[str, str] = {}
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = {k: v or "" for k, v in attrs}
        elif tag == "table":
            self.tables.append({"class": a.get("class", ""), "id": a.get("id", ""), "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1]["rows"][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(dom: str) -> _Tables:
    p = _Tables()
    p.feed(dom)
    return p


def test_format_top5_is_figure5_format():
    names = ["grilling", "barbecuing", "baking", "frying", "combusting", "cooking"]
    probs = np.array([0.620, 0.320, 0.028, 0.018, 0.004, 0.010])
    assert format_top5(probs, names) == ("1: grilling (0.620) 2: barbecuing (0.320) "
                                         "3: baking (0.028) 4: frying (0.018) 5: cooking (0.010)")


def test_report_content_is_self_contained_and_escaped(two_evals, tmp_path):
    cam = {"pointing": 0.75, "iou": 0.5, "per_class": {"frying": {"pointing": 1.0}}}
    m = json.loads((two_evals[0] / "metrics.json").read_text())
    ev_cam = tmp_path / "cam_eval"
    shutil.copytree(two_evals[0], ev_cam)
    (ev_cam / "metrics.json").write_text(json.dumps({**m, "cam": cam}))
    page = render_report([ev_cam, two_evals[1]],
                         extra_sections=[("CAM <gallery>", "<p id='finding'>ok</p>")])
    assert "://" not in page  # no external URLs, images are data URIs
    assert "<script" not in page
    assert "<b>opening" not in page and "&lt;b&gt;opening &amp; closing&lt;/b&gt;" in page
    assert "CAM &lt;gallery&gt;" in page and "<p id='finding'>ok</p>" in page
    t = _parse(page)
    headline = next(x for x in t.tables if x["id"] == "headline")
    assert headline["rows"][0][:3] == ["Method", "Top-1 (%)", "Top-5 (%)"]
    assert [r[0] for r in headline["rows"][1:]] == ["2D-ResNet", "3D-ResNeXt"]
    assert f"{m['top1'] * 100:.1f}" == headline["rows"][1][1]
    assert headline["rows"][1][-1] == "48 / 49"
    cam_table = next(x for x in t.tables if x["class"] == "cam")
    assert cam_table["rows"][1:] == [["pointing", "0.750"], ["iou", "0.500"]]
    assert "Ground Truth:" in page and "Top 5 Predictions: 1: " in page
    assert re.search(r"exact two-sided p = [0-9.e-]+", page)
    assert page == render_report([ev_cam, two_evals[1]],
                                 extra_sections=[("CAM <gallery>", "<p id='finding'>ok</p>")])


@pytest.mark.browser
def test_report_renders_in_chromium(two_evals, tmp_path, capsys, class_names):
    out = tmp_path / "report.html"
    assert main(["report", str(two_evals[0]), str(two_evals[1]), "--out", str(out),
                 "--title", "Two models"]) == 0
    assert "wrote" in capsys.readouterr().out
    n_img = out.read_text().count("<img ")
    assert n_img == 8  # 3 per evaluation + 2 for the comparison
    t = _parse(render_in_chromium(out))
    assert t.body.get("data-image-count") == str(n_img), t.body
    assert t.body.get("data-broken-images") == "0", t.body
    kinds = [x["class"] for x in t.tables]
    for kind in ("headline", "confused", "overall", "ranked", "per-class"):
        assert kind in kinds, kinds
    headline = next(x for x in t.tables if x["id"] == "headline")
    assert len(headline["rows"]) == 3
    confused = next(x for x in t.tables if x["class"] == "confused")
    assert confused["rows"][0] == ["Freq", "Actual", "Predicted", "Count"]
    assert len(confused["rows"]) > 1 and confused["rows"][1][1] in class_names


@pytest.mark.browser
def test_broken_image_is_detected(two_evals, tmp_path):
    out = write_report([two_evals[0]], tmp_path / "broken.html",
                       extra_sections=[("Deliberately broken", BROKEN_IMG)])
    t = _parse(render_in_chromium(out))
    assert t.body.get("data-image-count") == "4", t.body
    assert t.body.get("data-broken-images") == "1", t.body
