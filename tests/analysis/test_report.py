"""The HTML report: content checks, and rendering in real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from momentlens.analysis.report import format_top5, render_report, write_report
from momentlens.cli import main

BROKEN_IMG = '<img src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB" alt="broken">'


def test_format_top5_is_figure5_format():
    names = ["grilling", "barbecuing", "baking", "frying", "combusting", "cooking"]
    probs = np.array([0.620, 0.320, 0.028, 0.018, 0.004, 0.010])
    assert format_top5(probs, names) == ("1: grilling (0.620) 2: barbecuing (0.320) "
                                         "3: baking (0.028) 4: frying (0.018) 5: cooking (0.010)")


def test_report_content_is_self_contained_and_escaped(two_evals, tmp_path, parse_dom):
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
    t = parse_dom(page)
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
    # Lead sections sit between the results table and the first evaluation's section;
    # extra sections come after everything else.
    led = render_report([ev_cam, two_evals[1]], lead_sections=[("Finding", "<p>lead</p>")],
                        extra_sections=[("Gallery", "<p>tail</p>")])
    assert (led.index('id="headline"') < led.index("<p>lead</p>")
            < led.index("2D-ResNet</h2>") < led.index("<p>tail</p>"))


@pytest.mark.browser
def test_report_renders_in_chromium(two_evals, tmp_path, capsys, class_names,
                                    render_in_chromium, parse_dom):
    out = tmp_path / "report.html"
    assert main(["report", str(two_evals[0]), str(two_evals[1]), "--out", str(out),
                 "--title", "Two models"]) == 0
    assert "wrote" in capsys.readouterr().out
    n_img = out.read_text().count("<img ")
    # per evaluation: per-class bars and confusion heat map; for the comparison: the
    # differences. Top-5 of 5 classes out of 6 is 100% for every class, so each top-5
    # histogram would be one bar: a sentence stands there instead (issue 21).
    assert n_img == 5
    assert out.read_text().count("would be a single bar") == 3
    t = parse_dom(render_in_chromium(out))
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
def test_broken_image_is_detected(two_evals, tmp_path, render_in_chromium, parse_dom):
    out = write_report([two_evals[0]], tmp_path / "broken.html",
                       extra_sections=[("Deliberately broken", BROKEN_IMG)])
    t = parse_dom(render_in_chromium(out))
    assert t.body.get("data-image-count") == "3", t.body  # no one-bar top-5 histogram
    assert t.body.get("data-broken-images") == "1", t.body
