"""Helpers shared by the test folders: rendering a page in real headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

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


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("headless Chromium is required for the browser tests but was not found on "
                    "PATH; `make test` sets it up (Debian: apt-get install chromium), or "
                    "deselect them with -m 'not browser'")
    return exe


def _render_in_chromium(page: Path) -> str:
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


def _parse_dom(dom: str) -> _Tables:
    p = _Tables()
    p.feed(dom)
    return p



@pytest.fixture
def render_in_chromium():
    """``render(page) -> DOM`` after the load event, with ``data-image-count`` and
    ``data-broken-images`` set on ``<body>`` by a probe script added to a copy of the page."""
    return _render_in_chromium


@pytest.fixture
def parse_dom():
    """``parse(dom)`` -> an object with ``.tables`` (class, id, rows of cell text) and ``.body``."""
    return _parse_dom


def _write_model_file(folder: Path, classes: list[str], seed: int, **settings: object) -> Path:
    """An untrained model built from ``settings`` (TrainConfig keys) with weights drawn
    from ``seed``, saved as ``folder/model.safetensors`` the way training saves one."""
    import torch

    from momentlens.engine.checkpoint import save_model_file
    from momentlens.engine.config import load_config
    from momentlens.engine.factory import build_model, input_spec, model_meta

    torch.manual_seed(seed)
    cfg = load_config(None, settings)
    net = build_model(cfg, len(classes))
    path = Path(folder) / "model.safetensors"
    path.parent.mkdir(parents=True)
    save_model_file(path, net, model_meta(cfg, input_spec(cfg, net), list(classes)))
    return path


@pytest.fixture(scope="session")
def write_model_file():
    return _write_model_file


@pytest.fixture(scope="session")
def media():
    """``tests/first_hour_files.py``: writers of real media files of odd kinds (portrait,
    long, short, audio-only, WebM, AVI, variable frame rate). tests/ is not a package,
    so the module is loaded by path, here, once."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "momentlens_first_hour_files", Path(__file__).with_name("first_hour_files.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Disks:
    """Real small disks for the full-disk tests: tmpfs mounts, unmounted after the test."""

    def __init__(self) -> None:
        self.mounted: list[Path] = []

    def mount(self, where: Path, size: str) -> Path:
        """A tmpfs of ``size`` (``"64k"``, ``"4m"``) at ``where`` (made if missing); the
        test is skipped where it cannot be mounted (not root, no mount command)."""
        where.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                   str(where)], capture_output=True, text=True)
        except FileNotFoundError:
            pytest.skip("no mount command: cannot make a small disk")
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
        self.mounted.append(where)
        return where

    @staticmethod
    def fill(folder: Path) -> Path:
        """Write ``folder/filler`` until the disk is full; returns it."""
        import errno

        filler = folder / "filler"
        with open(filler, "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        return filler

    def unmount_all(self) -> None:
        for where in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def disks():
    """:class:`_Disks`: ``disks.mount(path, size)`` and ``disks.fill(folder)``."""
    made = _Disks()
    try:
        yield made
    finally:
        made.unmount_all()
