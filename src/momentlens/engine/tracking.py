"""What a training run reports as it goes: ``metrics.jsonl``, TensorBoard scalars (through
``torch.utils.tensorboard``; the ``tensorboard`` package is an optional extra) and one
line per epoch on stderr."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from momentlens.engine.config import TrainConfig
from momentlens.engine.writes import writing
from momentlens.utils import write_text_atomic

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger(__name__)


def open_tensorboard(log_dir: Path, purge_step: int | None = None) -> SummaryWriter | None:
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``log_dir``, or ``None`` (and one
    log line) when the optional ``tensorboard`` package is missing. ``purge_step``:
    events an earlier writer logged at this step or later are hidden."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("TensorBoard logs are off: the tensorboard package is not installed "
                    "(pip install 'momentlens[tensorboard]')")
        return None
    return SummaryWriter(str(log_dir), purge_step=purge_step)


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """``RUN_DIR/metrics.jsonl``, one row per epoch. Rewritten whole from the checkpointed
    history, so a resumed run never repeats or loses a row."""
    with writing(run_dir / "metrics.jsonl"):
        write_text_atomic(run_dir / "metrics.jsonl",
                          "".join(json.dumps(r) + "\n" for r in history))


def log_epoch(row: dict[str, Any], cfg: TrainConfig, run_dir: Path, writer: SummaryWriter | None,
              failed: int, total: int, history: list[dict[str, Any]]) -> None:
    """Report the epoch ``row`` (a row of metrics.jsonl): the history file, its numbers as
    TensorBoard scalars at the row's step (``train_loss`` -> ``train/loss``), and a line;
    ``failed`` of ``total`` training videos were unreadable."""
    write_history(run_dir, history)
    if writer is not None:
        for key, value in row.items():
            if isinstance(value, int | float) and key not in ("epoch", "step"):
                writer.add_scalar(key.replace("_", "/", 1), float(value), row["step"])
        writer.flush()
    line = (f"epoch {row['epoch']}/{cfg.epochs}  loss {row['train_loss']:.4f}  "
            f"train top-1 {100 * row['train_top1']:.1f}%  lr {row['lr']:.2e}  "
            f"{row['clips_per_s']:.1f} clips/s  data wait {100 * row['data_wait']:.0f}%")
    if "val_top1" in row:
        line += (f"  | val top-1 {100 * row['val_top1']:.1f}%  top-5 {100 * row['val_top5']:.1f}%"
                 f"  clip top-1 {100 * row['val_clip_top1']:.1f}%")
    if failed:
        line += f"  | {failed} of {total} training videos unreadable (see quarantine.jsonl)"
    print(line, file=sys.stderr)
