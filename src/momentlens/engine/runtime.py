"""Where and how computation runs: device choice, mixed precision, seeding, environment."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from momentlens.utils import MomentlensError

DEVICES = ("auto", "cpu", "cuda")
#: ``amp`` settings: see :func:`amp_dtype`.
AMP_MODES = ("auto", "bf16", "off")


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when present, else CPU. ``cuda`` without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise MomentlensError("--device cuda asked for, but no CUDA device is available")
        return torch.device("cuda", local_rank)
    if name != "cpu":
        raise MomentlensError(f"unknown device {name!r}; allowed: {', '.join(DEVICES)}")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 instructions (AVX512-BF16 or AMX), where autocast pays off."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or ``None`` for full fp32.

    ``auto``: bf16 on CUDA devices that support it, fp32 on CPUs. CPU bf16 autocast is
    available with ``amp=bf16`` on CPUs with native bf16, but it is not the default: in
    our runs (torch 2.13, AVX512-BF16) training 3D ResNets from scratch under it turned
    the loss into NaN within a few steps, where fp32 trained normally.
    """
    if mode == "off":
        return None
    supported = (torch.cuda.is_bf16_supported() if device.type == "cuda"
                 else cpu_has_native_bf16())
    if mode == "bf16" and not supported:
        raise MomentlensError(f"--set amp=bf16: {device.type} has no native bf16 support here")
    if mode == "auto" and device.type != "cuda":
        return None
    return torch.bfloat16 if supported else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    else:
        torch.backends.cudnn.benchmark = True


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, device and code revision, recorded in every run folder."""
    import av

    from momentlens._version import __version__

    env: dict[str, Any] = {
        "momentlens": __version__,
        "git_commit": _git_commit(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "av": av.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
        "cpu_bf16": cpu_has_native_bf16(),
        "argv": sys.argv,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env
