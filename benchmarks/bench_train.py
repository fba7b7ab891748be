"""Training speed: clips/s and data-wait share of the engine's ``train_one_epoch``.

For r3d18 on 16x112x112 clips and r2d50 on 4x112x112 frames (the paper's inputs), at
full width and at width 0.25, with bf16 autocast and channels_last each on and off.
Every setting trains from the same random weights on a synthetic dataset generated on
the fly (128 px, 90 frames), with the real data loader; one warm-up step, then
``--steps`` timed steps. Usage::

    python benchmarks/bench_train.py [--steps 3] [--batch-size 4] [--workers 1]
                                     [--models r3d18:16:4,r2d50:4:1] [--widths 0.25,1.0]
                                     [--markdown docs/benchmarks.md] [--section TITLE]

``--models`` takes ``name:frames:stride`` items (e.g. ``rx3d101:16:1`` for the paper's
3D-ResNeXt-101); ``--section`` names the markdown heading written or replaced (a GPU run
goes in its own section beside the CPU one).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from momentlens.data.layout import load_split
from momentlens.data.synth import generate
from momentlens.engine import factory as Fa
from momentlens.engine import train as T
from momentlens.engine.checkpoint import TrainState
from momentlens.engine.config import load_config
from momentlens.engine.distributed import DistInfo, EpochSampler
from momentlens.engine.inference import Normalizer, make_loader
from momentlens.engine.runtime import cpu_has_native_bf16, resolve_device
from momentlens.models.base import set_finetune

MODELS = "r3d18:16:4,r2d50:4:1"  # name:frames:temporal stride
SECTION = "## Training"


def machine() -> dict:
    info = {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpu_bf16": cpu_has_native_bf16(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Model name":
                info["cpu"] = value.strip()
            if key.strip() == "CPU(s)":
                info["cores"] = int(value.strip())
    except OSError:
        pass
    return info


def measure(data: Path, model_name: str, frames: int, stride: int, width: float, amp: str,
            channels_last: bool, steps: int, batch: int, workers: int, device: str) -> dict:
    cfg = load_config(None, {
        "data": str(data), "model": model_name, "frames": frames, "stride": stride,
        "size": 112, "width": width, "batch_size": batch, "workers": workers, "amp": amp,
        "channels_last": channels_last, "lr": 0.001, "schedule": "none", "device": device})
    dev = resolve_device(cfg.device)
    split = load_split(data, "training")
    torch.manual_seed(0)
    model = Fa.build_model(cfg, len(split.classes)).to(dev)
    set_finetune(model, "all")
    if channels_last:
        model.to(memory_format=model.memory_format)
    amp_dtype = torch.bfloat16 if amp == "bf16" else None
    ds = Fa.make_dataset(cfg, Fa.input_spec(cfg, model), split, train=True, run_dir=None)
    normalizer = Normalizer(Fa.input_spec(cfg, model), channels_last=channels_last)
    optimizer = Fa.make_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    rows = []
    for epoch, n in enumerate((1, steps)):  # warm-up step, then the timed steps
        sampler = EpochSampler(len(ds), batch, DistInfo(), seed=epoch, max_batches=n)
        ds.set_epoch(epoch)
        loader = make_loader(ds, batch, workers, sampler, dev)
        state = TrainState(epoch=epoch)
        c = replace(cfg, epochs=2)
        t0 = time.perf_counter()
        scheduler = Fa.make_scheduler(c, optimizer, n)
        stats = T.train_one_epoch(model, loader, optimizer, scheduler, state, c, dev,
                                  normalizer, amp_dtype, DistInfo(), T.StopRequest(),
                                  lambda: None)
        stats["seconds"] = time.perf_counter() - t0
        rows.append(stats)
    timed = rows[-1]
    return {"model": model_name, "frames": frames, "width": width, "amp": amp,
            "channels_last": channels_last, "batch_size": batch, "steps": steps,
            "clips_per_s": round(timed["clips_per_s"], 3),
            "data_wait": round(timed["data_wait"], 4),
            "step_seconds": round(timed["seconds"] / steps, 3),
            "loss": round(timed["train_loss"], 4)}


def markdown(results: list[dict], info: dict, args: argparse.Namespace, seconds: float) -> str:
    gpu = info["gpu"] or "none: no GPU was available in this session, CPU only"
    extra = "" if args.models == MODELS else f" --models {args.models}"
    extra += "" if args.widths == "0.25,1.0" else f" --widths {args.widths}"
    extra += "" if args.device == "auto" else f" --device {args.device}"
    lines = [
        args.section, "",
        f"`python benchmarks/bench_train.py --steps {args.steps} --batch-size "
        f"{args.batch_size} --workers {args.workers}{extra}` (issue 5). The engine's "
        "`train_one_epoch` (forward, cross-entropy, backward, SGD step) with the real "
        "DataLoader on a synthetic dataset made on the fly (128 px, 90 frames, H.264); "
        "1 warm-up step, then the timed steps; clips/s and data-wait share are what the "
        "progress bar shows. bf16 = `torch.autocast(bfloat16)`; channels_last = "
        "`channels_last_3d` (3D) / `channels_last` (2D) weights and inputs.", "",
        f"Machine: {info['cpu']}, {info.get('cores', '?')} cores, torch {info['torch']} "
        f"({info['threads']} threads), native CPU bf16: {info['cpu_bf16']}. GPU: {gpu}. "
        f"Whole benchmark: {seconds / 60:.1f} min.", "",
        "| model | clip | width | bf16 | channels_last | clips/s | data wait | s/step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['frames']}x112x112 | {r['width']} | "
            f"{'on' if r['amp'] == 'bf16' else 'off'} | {'on' if r['channels_last'] else 'off'} | "
            f"{r['clips_per_s']:.2f} | {100 * r['data_wait']:.0f}% | {r['step_seconds']:.2f} |")
    if info["gpu"]:
        lines += ["", f"Batch size {args.batch_size}, {args.steps} timed steps per row. A "
                  "data wait near 100% means the GPU waits for decoding: the loader, not "
                  "the model, sets the pace; add workers (`--workers`) on a bigger host.", ""]
    else:
        lines += ["", f"Batch size {args.batch_size}, {args.steps} timed steps per row: a "
                  "few seconds of work each on this shared 2-core VM, so differences under "
                  "~20% are noise. Full-width numbers are what a CPU can do, not a training "
                  "plan: use a GPU.", ""]
    return "\n".join(lines)


def write_section(path: Path, text: str, section: str = SECTION) -> None:
    """Replace (or append) the ``section`` of ``path``, leaving the rest (and keeping
    the block bench_feature_cache.py wrote into the section)."""
    doc = path.read_text() if path.exists() else "# Benchmarks\n\n"
    start = doc.find(section + "\n")
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + text
    else:
        end = doc.find("\n## ", start + len(section))
        old = doc[start:] if end < 0 else doc[start:end + 1]
        begin, stop = "<!-- bench_feature_cache -->", "<!-- /bench_feature_cache -->"
        if begin in old and stop in old:
            text += "\n" + old[old.index(begin):old.index(stop) + len(stop)] + "\n"
        doc = doc[:start] + text + ("\n" + doc[end + 1:] if end >= 0 else "")
    path.write_text(doc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--widths", default="0.25,1.0")
    p.add_argument("--device", default="auto")
    p.add_argument("--models", default=MODELS, help="name:frames:stride, comma-separated")
    p.add_argument("--markdown", type=Path, help="write/replace the section here")
    p.add_argument("--section", default=SECTION, help="markdown heading of the section")
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = p.parse_args()
    t0 = time.perf_counter()
    info = machine()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synth"
        need = args.batch_size * max(args.steps, 1)
        generate(data, train_per_class=-(-need // 4), val_per_class=1, size=128,
                 num_frames=90, seed=0, classes=["ring", "square", "rising", "falling"])
        for item in args.models.split(","):
            name, frames, stride = item.split(":")
            frames, stride = int(frames), int(stride)
            for width in [float(w) for w in args.widths.split(",")]:
                for amp in ("off", "bf16"):
                    for cl in (False, True):
                        r = measure(data, name, frames, stride, width, amp, cl, args.steps,
                                    args.batch_size, args.workers, args.device)
                        print(json.dumps(r), flush=True)
                        results.append(r)
    seconds = time.perf_counter() - t0
    text = markdown(results, info, args, seconds)
    print(text)
    if args.markdown:
        write_section(args.markdown, text, args.section)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
