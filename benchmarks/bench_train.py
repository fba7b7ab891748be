"""Training speed: clips/s and data-wait share of the engine's ``train_one_epoch``.

For r3d18 on 16x112x112 clips and r2d50 on 4x112x112 frames (the paper's inputs), at
full width and at width 0.25, with bf16 autocast and channels_last each on and off.
Every setting trains from the same random weights on a synthetic dataset generated on
the fly (128 px, 90 frames), with the real data loader (persistent workers, as
``momentlens train``); a warm-up epoch of 2 steps, then ``--steps`` timed steps (0: a
whole epoch). Usage::

    python benchmarks/bench_train.py [--steps 3] [--batch-size 4] [--workers 1]
                                     [--models r3d18:16:4,r2d50:4:1] [--widths 0.25,1.0]
                                     [--variants off:off,off:on,bf16:off,bf16:on]
                                     [--repeat K] [--videos-per-class N] [--prepare]
                                     [--model-only] [--device-augment]
                                     [--markdown docs/benchmarks.md] [--section TITLE]

``--models`` takes ``name:frames:stride`` items (e.g. ``rx3d101:16:1`` for the paper's
3D-ResNeXt-101); ``--variants`` ``amp:channels_last`` items; ``--repeat K`` lists each
video K times so that epochs are long (worker start-up amortised); ``--model-only`` adds
the rate of the same training steps on a batch already on the device and the ratio of
the two (issue 22); ``--section`` names the markdown heading written or replaced (a GPU
run goes in its own section beside the CPU one).
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
from momentlens.data.prepare import prepare_dataset
from momentlens.data.synth import generate
from momentlens.engine import factory as Fa
from momentlens.engine.checkpoint import TrainState
from momentlens.engine.config import load_config
from momentlens.engine.distributed import DistInfo, EpochSampler
from momentlens.engine.feed import TrainFeed, device_augment_dataset
from momentlens.engine.inference import Normalizer
from momentlens.engine.loop import train_one_epoch
from momentlens.engine.prefetch import DeviceAugment
from momentlens.engine.runtime import autocast, cpu_has_native_bf16, resolve_device
from momentlens.engine.signals import StopRequest
from momentlens.models.base import set_finetune

MODELS = "r3d18:16:4,r2d50:4:1"  # name:frames:temporal stride
VARIANTS = "off:off,off:on,bf16:off,bf16:on"  # amp:channels_last
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
            channels_last: bool, steps: int, batch: int, workers: int, device: str,
            repeat: int = 1, model_only: bool = False, device_augment: bool = False) -> dict:
    """One row: a warm-up epoch of 2 steps, then ``steps`` timed steps (0: a whole epoch)
    of ``train_one_epoch`` on one persistent loader (as ``momentlens train`` runs it);
    with ``model_only``, also the same steps on a batch already on the device."""
    cfg = load_config(None, {
        "data": str(data), "model": model_name, "frames": frames, "stride": stride,
        "size": 112, "width": width, "batch_size": batch, "workers": workers, "amp": amp,
        "channels_last": channels_last, "lr": 0.001, "schedule": "none", "device": device,
        "device_augment": device_augment, "epochs": 2})
    dev = resolve_device(cfg.device)
    split = load_split(data, "training")
    split = replace(split, records=split.records * repeat)  # --repeat: longer epochs
    torch.manual_seed(0)
    model = Fa.build_model(cfg, len(split.classes)).to(dev)
    set_finetune(model, "all")
    if channels_last:
        model.to(memory_format=model.memory_format)
    amp_dtype = torch.bfloat16 if amp == "bf16" else None
    spec = Fa.input_spec(cfg, model)
    ds = Fa.make_dataset(cfg, spec, split, train=True, run_dir=None)
    augment = (DeviceAugment(cfg.seed, spec.size, *device_augment_dataset(ds))
               if device_augment else None)
    normalizer = Normalizer(spec, channels_last=channels_last)
    optimizer = Fa.make_optimizer(cfg, [p for p in model.parameters() if p.requires_grad])
    scheduler = Fa.make_scheduler(cfg, optimizer, 1)
    sampler = EpochSampler(len(ds), batch, DistInfo(), seed=0)
    rows = []
    with TrainFeed(ds, sampler, workers, dev) as feed:
        for epoch, n in enumerate((2, steps)):  # warm-up, then the timed steps
            sampler.max_batches = n
            loader = feed.epoch(epoch)
            _sync(dev)
            t0 = time.perf_counter()
            stats = train_one_epoch(model, loader, optimizer, scheduler, TrainState(epoch=epoch),
                                    cfg, dev, normalizer, amp_dtype, DistInfo(), StopRequest(),
                                    lambda: None, augment=augment)
            _sync(dev)
            stats["seconds"], stats["steps"] = time.perf_counter() - t0, len(loader)
            rows.append(stats)
    timed = rows[-1]
    row = {"model": model_name, "frames": frames, "width": width, "amp": amp,
           "channels_last": channels_last, "batch_size": batch, "steps": timed["steps"],
           "clips_per_s": round(timed["steps"] * batch / timed["seconds"], 3),
           "data_wait": round(timed["data_wait"], 4),
           "step_seconds": round(timed["seconds"] / timed["steps"], 3),
           "loss": round(timed["train_loss"], 4)}
    if model_only:
        x = normalizer(torch.randint(0, 256, (batch, 3, frames, 112, 112), dtype=torch.uint8,
                                     device=dev))
        row["model_only_clips_per_s"] = round(_model_only(
            model, optimizer, x, len(split.classes), amp_dtype, timed["steps"]), 3)
        row["ratio"] = round(row["clips_per_s"] / row["model_only_clips_per_s"], 4)
    return row


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model_only(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                classes: int, amp: torch.dtype | None, steps: int) -> float:
    """Clips/s of training steps on ``x``, a normalised batch already on the device."""
    y = torch.arange(len(x), device=x.device) % classes
    model.train()
    for i in range(2 + min(steps, 50)):  # 2 warm-up steps, then at most 50 timed ones
        if i == 2:
            _sync(x.device)
            t0 = time.perf_counter()
        with autocast(x.device, amp):
            logits = model(x)
        torch.nn.functional.cross_entropy(logits.float(), y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync(x.device)
    return min(steps, 50) * len(x) / (time.perf_counter() - t0)


def markdown(results: list[dict], info: dict, args: argparse.Namespace, seconds: float) -> str:
    gpu = info["gpu"] or "none: no GPU was available in this session, CPU only"
    extra = "" if args.models == MODELS else f" --models {args.models}"
    extra += "" if args.widths == "0.25,1.0" else f" --widths {args.widths}"
    extra += "" if args.device == "auto" else f" --device {args.device}"
    extra += "" if args.variants == VARIANTS else f" --variants {args.variants}"
    extra += "" if args.repeat == 1 else f" --repeat {args.repeat}"
    extra += f" --videos-per-class {args.videos_per_class}" if args.videos_per_class else ""
    extra += " --prepare" * args.prepare + " --model-only" * args.model_only
    extra += " --device-augment" * args.device_augment
    only = args.model_only
    lines = [
        args.section, "",
        f"`python benchmarks/bench_train.py --steps {args.steps} --batch-size "
        f"{args.batch_size} --workers {args.workers}{extra}` (issues 5, 22). The engine's "
        "`train_one_epoch` (forward, cross-entropy, backward, SGD step) with the real "
        "DataLoader (persistent workers, as `momentlens train`) on a synthetic dataset made "
        "on the fly (128 px, 90 frames, H.264; `--prepare`: then `momentlens prepare`d); a "
        "warm-up epoch of 2 steps, then the timed steps (0: a whole epoch) on the same "
        "workers; clips/s is wall time, data wait the progress bar's. bf16 = "
        "`torch.autocast(bfloat16)`; channels_last = `channels_last_3d` (3D) / "
        "`channels_last` (2D) weights and inputs."
        + (" Model only: the same training steps on a batch already on the device (at most "
           "50 timed); ratio = clips/s / model only." if only else ""), "",
        f"Machine: {info['cpu']}, {info.get('cores', '?')} cores, torch {info['torch']} "
        f"({info['threads']} threads), native CPU bf16: {info['cpu_bf16']}. GPU: {gpu}. "
        f"Whole benchmark: {seconds / 60:.1f} min.", "",
        "| model | clip | width | bf16 | channels_last | clips/s | data wait | s/step |"
        + (" model only, clips/s | ratio |" if only else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|---|" if only else ""),
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['frames']}x112x112 | {r['width']} | "
            f"{'on' if r['amp'] == 'bf16' else 'off'} | {'on' if r['channels_last'] else 'off'} | "
            f"{r['clips_per_s']:.2f} | {100 * r['data_wait']:.0f}% | {r['step_seconds']:.2f} |"
            + (f" {r['model_only_clips_per_s']:.2f} | {100 * r['ratio']:.0f}% |" if only else ""))
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
    p.add_argument("--steps", type=int, default=3, help="timed steps; 0: a whole epoch")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--widths", default="0.25,1.0")
    p.add_argument("--device", default="auto")
    p.add_argument("--models", default=MODELS, help="name:frames:stride, comma-separated")
    p.add_argument("--variants", default=VARIANTS, help="amp:channels_last, comma-separated")
    p.add_argument("--repeat", type=int, default=1, help="list each video K times")
    p.add_argument("--videos-per-class", type=int, default=0, help="0: just enough")
    p.add_argument("--prepare", action="store_true", help="momentlens prepare the data first")
    p.add_argument("--model-only", action="store_true",
                   help="also time training steps on a batch already on the device")
    p.add_argument("--device-augment", action="store_true")
    p.add_argument("--preset", default="easy", choices=("easy", "medium", "hard"),
                   help="synthetic look; easy (default) keeps the videos comparable with "
                   "earlier figures: the hard look's pixel noise makes H.264 far slower "
                   "to decode, which measures the decoder rather than the training loop")
    p.add_argument("--markdown", type=Path, help="write/replace the section here")
    p.add_argument("--section", default=SECTION, help="markdown heading of the section")
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = p.parse_args()
    t0 = time.perf_counter()
    info = machine()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synth"
        need = args.batch_size * max(args.steps, 2)
        per_class = args.videos_per_class or -(-need // (4 * args.repeat))
        generate(data, train_per_class=per_class, val_per_class=1, size=128, num_frames=90,
                 seed=0, classes=["ring", "square", "rising", "falling"],
                 workers=info.get("cores", 1), preset=args.preset)
        if args.prepare:
            prepare_dataset(data, Path(tmp) / "prepared", workers=info.get("cores", 1))
            data = Path(tmp) / "prepared"
        for item in args.models.split(","):
            name, frames, stride = item.split(":")
            for width in [float(w) for w in args.widths.split(",")]:
                for variant in args.variants.split(","):
                    amp, cl = variant.split(":")
                    r = measure(data, name, int(frames), int(stride), width, amp, cl == "on",
                                args.steps, args.batch_size, args.workers, args.device,
                                args.repeat, args.model_only, args.device_augment)
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
