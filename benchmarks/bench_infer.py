"""Inference: the default path against eager fp32, ONNX Runtime, model loading, `predict`.

1. Accuracy guard: top-1 agreement and max logit difference of the default path
   (``--precision auto``) against eager fp32, on a *trained* model and every real decoded
   clip of its validation split. The model: ``--run RUN --data DATA``, else the demo's 3D
   run (``demo_out/runs/3d``) if present, else a small r3d trained here (synth recipe
   ``synth/r3d_tiny.yaml``, fewer epochs) on a small synthetic dataset.
2. Speed, r3d18 on 16x112x112, batch 1 and 4, same random weights everywhere:
   the default path, fp32 channels-last and ONNX Runtime fp32 against an independent
   Hara-style eager fp32 reference (benchmarks/hara_resnet3d.py); interleaved rounds,
   medians. ONNX parity on the trained model's clips.
3. Model load: r3d18 from its model file, meta device + assign vs building eagerly.
4. ``momentlens predict RUN VIDEO`` in a fresh process: CPU-seconds of start-up
   (imports), model load, decode, forward, and the whole command.

Usage::

    python benchmarks/bench_infer.py [--run RUN --data DATA] [--rounds 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hara_resnet3d import resnet18  # noqa: E402
from momentlens.engine.checkpoint import load_model, read_model_file, save_model_file  # noqa: E402
from momentlens.engine.export import export_onnx, load_onnx, parity, parity_clips  # noqa: E402
from momentlens.engine.inference import inference_path  # noqa: E402
from momentlens.models.registry import create_model  # noqa: E402

CPU = torch.device("cpu")


def trained_run(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    if args.run:
        return Path(args.run), Path(args.data)
    demo = Path("demo_out")
    if (demo / "runs" / "3d").is_dir():
        return demo / "runs" / "3d", next(p for p in demo.iterdir() if (p / "validation").is_dir())
    from momentlens.cli import main
    from momentlens.data.synth import generate

    data = work / "synth"
    generate(data, train_per_class=16, val_per_class=8, size=112, num_frames=60, seed=0)
    run = work / "run"
    rc = main(["train", "--config", "synth/r3d_tiny.yaml", "--data", str(data), "--out", str(run),
               "--set", f"epochs={args.epochs}", "--set", "workers=1", "--set", "device=cpu"])
    assert rc == 0, "training failed"
    return run, data


def accuracy_guard(run: Path, data: Path) -> dict:
    model, meta = load_model(run)
    clips = parity_clips(model.input_spec, data, count=10**6)  # every validation video
    fast = inference_path("auto", CPU)
    default = fast.prepare(load_model(run)[0])
    result = parity(model, lambda x: fast(default, x), clips)
    onnx_file = run / "bench.onnx"
    export_onnx(model, meta, onnx_file)
    result["onnx"] = parity(model, load_onnx(onnx_file)[0], clips)
    onnx_file.unlink()
    result.update(precision=fast.precision, model=meta["model"], run=str(run))
    return result


def _time(fn, x, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn(x)
    return (time.perf_counter() - t0) / reps


def speed(rounds: int, work: Path) -> dict:
    torch.manual_seed(0)
    ours = create_model("r3d18", num_classes=400).eval()
    ref = resnet18(400).eval()
    ref.load_state_dict(ours.state_dict())
    auto, fp32 = inference_path("auto", CPU), inference_path("fp32", CPU)
    default = auto.prepare(create_model("r3d18", num_classes=400))
    default.load_state_dict(ours.state_dict())
    onnx_file = export_onnx(ours, {"classes": [str(i) for i in range(400)], "model": "r3d18"},
                            work / "r3d18.onnx")
    ort_model = load_onnx(onnx_file)[0]
    paths = {"reference": lambda x: ref(x), "default": lambda x: auto(default, x),
             "fp32_channels_last": lambda x: fp32(default, x), "onnxruntime": ort_model}
    out = {}
    for batch in (1, 4):
        x = torch.randn(batch, 3, 16, 112, 112)
        with torch.inference_mode():
            for fn in paths.values():
                fn(x)  # warm-up
            times = {k: [] for k in paths}
            for _ in range(rounds):  # interleaved: drift of a shared machine hits all alike
                for k, fn in paths.items():
                    times[k].append(_time(fn, x, 1))
        med = {k: statistics.median(v) for k, v in times.items()}
        out[f"batch{batch}"] = {"median_s": med, "speedup_vs_reference": {
            k: med["reference"] / v for k, v in med.items() if k != "reference"}}
    with torch.inference_mode():
        x = torch.randn(4, 3, 16, 112, 112)
        out["onnx_parity_random_input"] = parity(ours, ort_model, x)
    return out


def model_load(rounds: int, work: Path) -> dict:
    path = work / "r3d18.safetensors"
    model = create_model("r3d18", num_classes=400)
    save_model_file(path, model, {"model": "r3d18", "num_classes": 400, "options": {},
                                  "classes": [str(i) for i in range(400)],
                                  "input": model.input_spec.to_dict()})
    meta_s, eager_s = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        load_model(path)
        meta_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        tensors, meta = read_model_file(path)
        m = create_model("r3d18", num_classes=400)
        m.load_state_dict(tensors)
        eager_s.append(time.perf_counter() - t0)
    return {"meta_assign_s": statistics.median(meta_s), "eager_build_s": statistics.median(eager_s)}


PREDICT_STAGES = r"""
import json, sys, time
t = [time.process_time()]
from momentlens.engine.evaluate import views_dataset
from momentlens.engine.predict import collect_videos
from momentlens.engine.inference import Normalizer, load_for_inference
t.append(time.process_time())
model, meta, fast = load_for_inference(sys.argv[1], "cpu")
t.append(time.process_time())
from momentlens.data.layout import VideoRecord
ds = views_dataset(model.input_spec, len(meta["classes"]),
                   [VideoRecord(path=collect_videos([sys.argv[2]])[0], label=0)], 1, 1)
clip = ds[0][0]
t.append(time.process_time())
fast(model, Normalizer(model.input_spec)(clip[None]))
t.append(time.process_time())
print(json.dumps({"imports": t[1] - t[0], "model_load": t[2] - t[1], "decode": t[3] - t[2],
                  "forward": t[4] - t[3], "interpreter_to_first_line": t[0]}))
"""


def predict_breakdown(run: Path, video: Path) -> dict:
    stages = json.loads(subprocess.run([sys.executable, "-c", PREDICT_STAGES, str(run),
                                        str(video)], check=True, capture_output=True,
                                       text=True).stdout)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "momentlens", "predict", str(run), str(video)],
                   check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"stages_cpu_s": stages, "command_cpu_s": cpu, "command_wall_s": wall,
            "video": str(video)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run")
    ap.add_argument("--data")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json")
    args = ap.parse_args()
    results = {"machine": {"cpu": platform.processor() or platform.machine(),
                           "threads": torch.get_num_threads(), "torch": torch.__version__}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run, data = trained_run(args, work)
        results["accuracy_guard"] = accuracy_guard(run, data)
        print(json.dumps(results["accuracy_guard"], indent=1), flush=True)
        results["model_load_r3d18"] = model_load(args.rounds, work)
        print(json.dumps(results["model_load_r3d18"]), flush=True)
        video = sorted((Path(data) / "validation").rglob("*.mp4"))[0]
        results["predict_one_video"] = predict_breakdown(run, video)
        print(json.dumps(results["predict_one_video"], indent=1), flush=True)
        results["speed_r3d18"] = speed(args.rounds, work)
    print(json.dumps(results["speed_r3d18"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
