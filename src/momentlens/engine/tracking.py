"""What a training run reports as it goes: ``metrics.jsonl``, TensorBoard scalars (through
``torch.utils.tensorboard``; the ``tensorboard`` package is an optional extra) and one
line per epoch on stderr."""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from momentlens.engine.config import TrainConfig
from momentlens.engine.writes import writing
from momentlens.utils import write_text_atomic

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger(__name__)


class Board:
    """TensorBoard scalars of a run, best effort: TensorBoard is a view, ``metrics.jsonl``
    the record. A write that fails (a full disk, often on the background thread that
    TensorBoard writes from) turns the logs off with one warning instead of ending the
    run; that thread's own traceback is not printed (the warning says it)."""

    def __init__(self, writer: SummaryWriter, log_dir: Path) -> None:
        self.writer: SummaryWriter | None = writer
        self.log_dir = log_dir

    def _off(self, exc: BaseException) -> None:
        reason = getattr(exc, "strerror", None) or exc
        log.warning("TensorBoard logs are off from here: cannot write %s (%s); "
                    "metrics.jsonl has every epoch", self.log_dir, reason)
        self.writer = None

    def scalars(self, values: dict[str, float], step: int) -> None:
        """``values`` at ``step``, written now (flushed)."""
        if self.writer is None:
            return
        try:
            for key, value in values.items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()
        except Exception as exc:  # noqa: BLE001 - any failure of a view: logged, not fatal
            self._off(exc)

    def close(self) -> None:
        writer, self.writer = self.writer, None
        try:
            if writer is not None:
                writer.close()
        except Exception as exc:  # noqa: BLE001 - as in scalars
            self._off(exc)


def _quiet_writer_threads() -> None:
    """Leave the failure of TensorBoard's writer thread to :class:`Board` (one warning
    line, from the main thread); every other thread's goes to the hook there was."""
    previous = threading.excepthook
    if getattr(previous, "momentlens_board", False):
        return

    def hook(args: Any) -> None:
        if type(args.thread).__name__ != "_AsyncWriterThread":
            previous(args)

    hook.momentlens_board = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def open_tensorboard(log_dir: Path, purge_step: int | None = None) -> Board | None:
    """A :class:`Board` on ``log_dir``, or ``None`` (and one log line) when the optional
    ``tensorboard`` package is missing or the folder cannot be written. ``purge_step``:
    events an earlier writer logged at this step or later are hidden."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("TensorBoard logs are off: the tensorboard package is not installed "
                    "(pip install 'momentlens[tensorboard]')")
        return None
    _quiet_writer_threads()
    try:
        writer = SummaryWriter(str(log_dir), purge_step=purge_step)
    except OSError as exc:
        log.warning("TensorBoard logs are off: cannot write %s (%s); metrics.jsonl has "
                    "every epoch", log_dir, exc.strerror or exc)
        return None
    return Board(writer, log_dir)


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """``RUN_DIR/metrics.jsonl``, one row per epoch. Rewritten whole from the checkpointed
    history, so a resumed run never repeats or loses a row."""
    with writing(run_dir / "metrics.jsonl"):
        write_text_atomic(run_dir / "metrics.jsonl",
                          "".join(json.dumps(r) + "\n" for r in history))


def log_epoch(row: dict[str, Any], cfg: TrainConfig, run_dir: Path, writer: Board | None,
              failed: int, total: int, history: list[dict[str, Any]]) -> None:
    """Report the epoch ``row`` (a row of metrics.jsonl): the history file, its numbers as
    TensorBoard scalars at the row's step (``train_loss`` -> ``train/loss``), and a line;
    ``failed`` of ``total`` training videos were unreadable."""
    write_history(run_dir, history)
    if writer is not None:
        writer.scalars({key.replace("_", "/", 1): float(value) for key, value in row.items()
                        if isinstance(value, int | float) and key not in ("epoch", "step")},
                       row["step"])
    line = (f"epoch {row['epoch']}/{cfg.epochs}  loss {row['train_loss']:.4f}  "
            f"train top-1 {100 * row['train_top1']:.1f}%  lr {row['lr']:.2e}  "
            f"{row['clips_per_s']:.1f} clips/s  data wait {100 * row['data_wait']:.0f}%")
    if "val_top1" in row:
        line += (f"  | val top-1 {100 * row['val_top1']:.1f}%  top-5 {100 * row['val_top5']:.1f}%"
                 f"  clip top-1 {100 * row['val_clip_top1']:.1f}%")
    if failed:
        line += f"  | {failed} of {total} training videos unreadable (see quarantine.jsonl)"
    print(line, file=sys.stderr)
