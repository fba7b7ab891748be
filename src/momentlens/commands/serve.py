"""``momentlens serve``: load the runs once, build the app, run uvicorn until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
from pathlib import Path
from typing import Any

from momentlens.utils import MomentlensError


def run_names(paths: list[str]) -> list[str]:
    """A short unique column name per run: its folder name (``2d``, ``3d``), numbered
    when two are alike."""
    names: list[str] = []
    for p in paths:
        path = Path(p)
        base = (path.parent.name if path.is_file() else path.name) or str(p)
        name, i = base, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.append(name)
    return names


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def load_runs(paths: list[str], device: str, precision: str) -> dict[str, Any]:
    import momentlens

    return {name: momentlens.load(p, device=device, precision=precision)
            for name, p in zip(run_names(paths), paths)}


def run(args: argparse.Namespace) -> int:
    from momentlens.serve import require

    require()
    import uvicorn

    from momentlens.serve.app import create_app
    from momentlens.serve.score import Settings

    if args.workers < 1 or args.queue < 0 or args.max_upload_mb <= 0:
        raise MomentlensError("--workers must be >= 1, --queue >= 0, --max-upload-mb > 0")
    settings = Settings(max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds or None,
                        workers=args.workers, queue=args.queue, window_s=args.window_s,
                        stride_s=args.stride_s)
    runs = load_runs(args.runs, args.device, args.precision)
    for name, clf in runs.items():
        print(f"loaded {name}: {clf!r}", file=sys.stderr)
    if not _is_loopback(args.host):
        print(f"warning: serving on {args.host}, reachable from other machines; uploads "
              "are untrusted input", file=sys.stderr)
    app = create_app(runs, settings)
    print(f"momentlens serve: http://{args.host}:{args.port}/  (API docs: /docs)",
          file=sys.stderr, flush=True)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            limit_concurrency=64 + settings.workers + settings.queue,
                            timeout_graceful_shutdown=10)
    # uvicorn turns SIGTERM / SIGINT into a graceful shutdown (requests finish, the app's
    # folder is removed) and then raises the signal again under the handler found here:
    # a no-op one, so a requested shutdown ends with exit status 0, not a signal death.
    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.Server(config).run()
    print("momentlens serve: stopped", file=sys.stderr)
    return 0
