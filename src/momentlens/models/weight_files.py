"""Reading a weight file as untrusted input, and saying what a file is when it is refused.

:func:`load_weight_file` returns the object stored in a PyTorch checkpoint (read with
``torch.load(weights_only=True)``: tensors and plain containers only, no code runs) or
the tensors of a safetensors file (recognised by its content, whatever its name).
Every failure becomes one :class:`MomentlensError` line naming the file, what it is
(empty, text, a zip archive without ``data.pkl``, a pickle that asks for
``posix.system``, a truncated archive, a directory ...) and why it was refused. PyTorch's
own message is never passed through whole: it advises retrying with
``weights_only=False``, which must never be suggested for a file of unknown origin.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from momentlens.utils import MomentlensError

# Modules whose globals a pickled state dict names (tensor rebuilding, OrderedDict,
# bytes decoding); any other global is what the safe loader refuses.
_PLAIN_MODULES = ("torch", "collections", "_codecs")
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # protocol 2 spellings
_SCAN_LIMIT = 64 << 20  # bytes of pickle read when looking for the globals a file names
_NOT_CHECKPOINT = "not a readable PyTorch checkpoint"


def load_weight_file(path: Path) -> tuple[Any, bool]:
    """``(object, is_safetensors)`` read from ``path``; MomentlensError (one line) if
    the file is missing, unreadable, damaged or asks for anything but tensors."""
    head = _head(path)
    if _is_safetensors(head, path.stat().st_size):
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu")), True
        except Exception as exc:  # SafetensorError, OSError, ...: all become one line
            raise MomentlensError(f"{path}: not a readable safetensors file "
                                  f"({_first_line(exc)})") from exc
    if path.suffix == ".safetensors":
        raise MomentlensError(f"{path}: not a readable safetensors file ({describe(path)})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4 ..."
            return torch.load(path, map_location="cpu", weights_only=True), False
    except Exception as exc:
        raise MomentlensError(refusal(path, exc)) from exc


def _head(path: Path, n: int = 512) -> bytes:
    if not path.exists():
        raise MomentlensError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise MomentlensError(f"{path}: is a directory, not a checkpoint file")
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError as exc:
        raise MomentlensError(f"{path}: cannot be read ({exc.strerror or exc})") from exc


def _is_safetensors(head: bytes, size: int) -> bool:
    # An 8-byte little-endian header length, then the JSON header.
    if len(head) < 10:
        return False
    n = struct.unpack("<Q", head[:8])[0]
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def refusal(path: Path, exc: BaseException) -> str:
    """The one-line message for a file ``torch.load(weights_only=True)`` failed on."""
    unpickling = isinstance(exc, pickle.UnpicklingError)  # the safe unpickler said no
    bad = _refused_globals(path) if unpickling else []
    found = re.search(r"GLOBAL (\S+?)(?: was not| whose|\s|$)", str(exc))
    if not bad and unpickling and found:
        bad = [found.group(1).rstrip(".,")]
    if bad:
        return (f"{path}: refused to load: a pickle that asks for the global "
                f"{', '.join(bad[:3])}, and unpickling it could run arbitrary code; only "
                "tensors and plain containers are accepted (use a file that holds only a "
                "state dict, or a .safetensors file)")
    return f"{path}: {_NOT_CHECKPOINT}: {describe(path, exc)}"


def describe(path: Path, exc: BaseException | None = None) -> str:
    """What the file is, in words, with the loader's reason when that adds anything."""
    size = path.stat().st_size
    head = _head(path)
    reason = _torch_reason(exc) if exc is not None else ""
    if size == 0:
        return "the file is empty (0 bytes)"
    if head.startswith(b"PK"):
        return _describe_zip(path, size, reason)
    if head[:1] == b"\x80":
        return (f"a pickle (legacy PyTorch format) of {size} bytes that cannot be read"
                + (f" ({reason})" if reason else ""))
    text = _as_text(head)
    if text is not None:
        return _describe_text(text)
    return f"unknown binary data ({size} bytes, starting {head[:8].hex(' ')})"


def _describe_zip(path: Path, size: int, reason: str) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return (f"a truncated or damaged zip archive of {size} bytes (an interrupted download "
                "or copy?)" + (f"; {reason}" if reason else ""))
    if not any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        return f"a zip archive without data.pkl (it holds {shown or 'nothing'})"
    return "a PyTorch zip checkpoint that cannot be read" + (f" ({reason})" if reason else "")


def _as_text(head: bytes) -> str | None:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of the sample
            return None
        text = head[: exc.start].decode("utf-8")
    printable = sum(c.isprintable() or c in "\n\r\t" for c in text)
    return text if text and printable == len(text) else None


def _describe_text(text: str) -> str:
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if first.startswith("version https://git-lfs"):
        return "a Git LFS pointer, not the weights themselves (fetch them with git lfs pull)"
    hint = " (a saved web page or error message?)" if first.startswith("<") else ""
    return f"a text file starting {first[:40]!r}{hint}"


def _torch_reason(exc: BaseException) -> str:
    """PyTorch's reason, reduced to one line and stripped of its advice to disable
    ``weights_only`` (never to be given for an untrusted file)."""
    text = str(exc)
    detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    if detail:
        text = detail.group(1)
    line = _first_line(text) if text.strip() else type(exc).__name__
    line = re.split(r"\. (?:This is an internal|If you|Please|Check the|The file)", line)[0]
    if "weights_only" in line or "Weights only" in line or isinstance(exc, KeyError):
        return ""
    return line.strip().rstrip(".")


def _first_line(exc: object) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def _refused_globals(path: Path) -> list[str]:
    """Globals other than torch's and containers' that the file's pickles name, found
    by reading the opcodes only (nothing is unpickled)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if member is None:
                    return []
                with archive.open(member) as fh:
                    stream = io.BytesIO(fh.read(_SCAN_LIMIT))
        else:
            with open(path, "rb") as fh:
                stream = io.BytesIO(fh.read(_SCAN_LIMIT))
    except (OSError, zipfile.BadZipFile, ValueError, RuntimeError):
        return []
    found: list[str] = []
    for _ in range(4):  # the legacy format is several pickles in a row
        if not _scan_pickle(stream, found):
            break
    renamed = [_PY2_MODULES.get(g.split(".")[0], g.split(".")[0]) + g[g.index("."):]
               if "." in g else g for g in found]
    return [g for g in dict.fromkeys(renamed) if g.split(".")[0] not in _PLAIN_MODULES]


def _scan_pickle(stream: io.BytesIO, found: list[str]) -> bool:
    strings: list[object] = []  # strings pushed so far (STACK_GLOBAL takes the last two)
    memo: dict[int, object] = {}
    last: object = None  # the string the previous opcode pushed, if any
    try:
        for op, arg, _pos in pickletools.genops(stream):
            pushed = None
            if op.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif "UNICODE" in op.name or "STRING" in op.name:
                pushed = arg
            elif op.name == "MEMOIZE":
                memo[len(memo)] = last
            elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = last
            elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                pushed = memo.get(int(arg))
            if pushed is not None:
                strings.append(pushed)
            last = pushed if pushed is not None else (last if "PUT" in op.name
                                                      or op.name == "MEMOIZE" else None)
    except Exception:  # not (or no longer) a pickle: what was found so far counts
        return False
    return True
