"""Scoring a dataset with a model: the loop shared by validation, ``evaluate`` and ``predict``."""

from __future__ import annotations

import atexit
import contextlib
import logging
import multiprocessing.util  # noqa: F401 - imported before the atexit hook below
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

from momentlens.engine.distributed import DistInfo, EpochSampler, all_gather_objects, launched
from momentlens.engine.distributed import setup as dist_setup
from momentlens.engine.runtime import autocast
from momentlens.engine.signals import ignore_stop_signals, stop_signals_blocked
from momentlens.models.spec import InputSpec
from momentlens.utils import progress

log = logging.getLogger(__name__)


@dataclass
class Scores:
    """Softmax (or, for a multi-label model, sigmoid) scores of the items of a dataset,
    in item order.

    ``indices`` (V,) item indices; ``labels`` (V,) or multi-hot (V, K); ``clip_probs`` (V, N, K): one row of
    class probabilities per view (N clips x crops); ``video_probs`` (V, K) their mean.
    """

    indices: np.ndarray
    labels: np.ndarray
    clip_probs: np.ndarray

    @property
    def video_probs(self) -> np.ndarray:
        return self.clip_probs.mean(axis=1)


@dataclass(frozen=True)
class Normalizer:
    """Turns uint8 clips on the device into the model's float input, as ``spec`` says."""

    spec: InputSpec
    channels_last: bool = False

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        x = self.spec.normalize(clips)
        if self.channels_last and x.ndim == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return x


#: Batches each loader worker prepares ahead.
PREFETCH_FACTOR = 4


def make_loader(dataset: Any, batch_size: int, workers: int, sampler: torch.utils.data.Sampler,
                device: torch.device, persistent: bool = False,
                collate_fn: Any = None) -> torch.utils.data.DataLoader:
    """A loader of ``dataset`` in ``sampler`` order. Its workers ignore SIGINT and SIGTERM
    (a signal to the process group is the main process's to handle: see
    :mod:`momentlens.engine.signals`); item randomness comes from the dataset's own
    ``(seed, epoch, index)`` generators, never from which worker loads an item.
    ``collate_fn``: the default collate when ``None``."""
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs.update(persistent_workers=persistent, prefetch_factor=PREFETCH_FACTOR,
                      worker_init_fn=ignore_stop_signals)
    if collate_fn is not None:
        kwargs["collate_fn"] = collate_fn
    return _Loader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                   pin_memory=device.type == "cuda", drop_last=False, **kwargs)


class _Loader(torch.utils.data.DataLoader):
    """A DataLoader whose workers are forked with SIGINT / SIGTERM blocked, so that a
    signal to the process group cannot kill one before it ignores them
    (:func:`~momentlens.engine.signals.stop_signals_blocked`), and whose shutdown kills
    a worker that did not stop (:class:`_WorkersIter`)."""

    def _get_iterator(self):  # noqa: ANN202 - torch's own method: the workers start here
        if self.num_workers == 0:
            return super()._get_iterator()
        self.check_worker_number_rationality()
        with stop_signals_blocked():
            return _WorkersIter(self)


class _WorkersIter(_MultiProcessingDataLoaderIter):
    """torch's iterator over worker processes, with a last step to its shutdown.

    torch asks each worker to finish, waits a few seconds, then calls ``terminate()``
    (SIGTERM), which our workers ignore, and a worker stuck before it ignores anything
    (seen: a worker of a DDP rank hung inside ``fork``) does not act on either. Python's
    exit then joined that daemonic worker forever: the run ended, its process never did.
    A worker still alive after torch's shutdown is killed (SIGKILL) and reaped."""

    def __init__(self, loader: torch.utils.data.DataLoader) -> None:
        super().__init__(loader)
        _LIVE.add(self)

    def _shutdown_workers(self) -> None:
        workers = list(getattr(self, "_workers", []))
        super()._shutdown_workers()
        stuck = [w for w in workers if w.is_alive()]
        for worker in stuck:
            log.warning("loader worker %s did not stop; killing it", worker.pid)
        _kill(stuck)


def _kill(workers: list[Any]) -> None:
    """SIGKILL ``workers`` (loader worker processes), then reap them."""
    for worker in workers:
        worker.kill()
    for worker in workers:
        worker.join(timeout=10)


# Iterators whose workers may still run. An exception that escapes a loop over a loader
# keeps the iterator alive in its traceback (Python keeps the last one for the exit), so
# torch never shuts its workers down; multiprocessing's exit hook then sends them SIGTERM,
# which they ignore, and joins them forever: a script that failed never exited.
_LIVE: weakref.WeakSet[_WorkersIter] = weakref.WeakSet()


def _kill_workers_at_exit() -> None:
    from torch.utils.data._utils import signal_handling

    for it in list(_LIVE):
        workers = [w for w in getattr(it, "_workers", []) if w.is_alive()]
        if not workers:
            continue
        # First stop torch's SIGCHLD watch of these workers: it would raise "worker ...
        # is killed by signal" in the middle of this hook.
        with contextlib.suppress(Exception):
            signal_handling._remove_worker_pids(id(it))
        _kill(workers)


# atexit runs its hooks last-registered first: multiprocessing's (imported above, so
# registered already) comes after this one.
atexit.register(_kill_workers_at_exit)


def activate(logits: torch.Tensor, sigmoid: bool = False) -> torch.Tensor:
    """Float32 class probabilities of ``logits (B, K)``: a softmax over the classes, or
    (``sigmoid``: a multi-label model) each class's own sigmoid, not summing to one."""
    return torch.sigmoid(logits.float()) if sigmoid else F.softmax(logits.float(), dim=1)


@torch.no_grad()
def score_dataset(
    model: torch.nn.Module,
    dataset: Any,
    device: torch.device,
    normalizer: Normalizer,
    batch_size: int = 8,
    workers: int = 0,
    amp: torch.dtype | None = None,
    info: DistInfo | None = None,
    desc: str = "eval",
    sigmoid: bool = False,
    bar: bool = True,
) -> Scores:
    """Softmax scores of every item of ``dataset`` (each video exactly once); with
    ``sigmoid`` (a multi-label model), each class's own sigmoid instead.

    Items are ``(clip, label, index)`` with ``clip`` uint8 ``(C, T, H, W)`` or, with several
    views, ``(N, C, T, H, W)``. Under several processes each rank scores a disjoint
    share and the shares are gathered, so every rank returns the complete result.
    ``bar``: a progress bar (on rank 0 only, and only on a terminal).
    """
    info = info or DistInfo()
    was_training = model.training
    model.eval()
    sampler = EpochSampler(len(dataset), batch_size, info, shuffle=False)
    loader = make_loader(dataset, batch_size, workers, sampler, device)
    idx_parts, label_parts, prob_parts = [], [], []
    batches = progress(loader, total=len(loader), desc=desc, unit="batch",
                       disable=None if info.is_main and bar else True)
    for clips, labels, indices in batches:
        views = clips.shape[1] if clips.ndim == 6 else 1
        flat = clips.reshape(-1, *clips.shape[-4:]).to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(normalizer(flat))
        probs = activate(logits, sigmoid).reshape(len(labels), views, -1)
        idx_parts.append(indices.numpy())
        label_parts.append(labels.numpy())
        prob_parts.append(probs.cpu().numpy())
    model.train(was_training)
    k = model.classifier.out_features if hasattr(model, "classifier") else 0
    local = (
        np.concatenate(idx_parts) if idx_parts else np.zeros(0, dtype=np.int64),
        np.concatenate(label_parts) if label_parts else np.zeros(0, dtype=np.int64),
        np.concatenate(prob_parts) if prob_parts else np.zeros((0, 1, k), dtype=np.float32),
    )
    parts = all_gather_objects(local, info)
    indices = np.concatenate([p[0] for p in parts])
    order = np.argsort(indices, kind="stable")
    return Scores(
        indices=indices[order],
        labels=np.concatenate([p[1] for p in parts])[order],
        clip_probs=np.concatenate([p[2] for p in parts])[order],
    )


# ----------------------------------------------------------------------------- the fast path

#: ``--precision`` choices: ``auto`` picks per device (:func:`inference_path`).
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class InferencePath:
    """How a model runs for ``evaluate``, ``predict``, ``cam`` and ``momentlens.load``.

    ``dtype``: the autocast dtype (``torch.bfloat16``) or ``None`` for plain fp32;
    ``channels_last``: convolution weights (and 3D inputs) in the model's channels-last
    layout (``model.memory_format``). Every pass runs under ``torch.inference_mode``.
    """

    device: torch.device
    dtype: torch.dtype | None = None
    channels_last: bool = False
    tf32: bool = False  # CUDA: fp32 matmuls and convolutions on TF32, inside context()

    @property
    def precision(self) -> str:
        """``"bf16"`` or ``"fp32"``: what an evaluation folder records."""
        return "bf16" if self.dtype == torch.bfloat16 else "fp32"

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` on the device, in eval mode, in this path's memory layout."""
        model = model.to(self.device).eval()
        if self.channels_last and hasattr(model, "memory_format"):
            model = model.to(memory_format=model.memory_format)
        return model

    def normalizer(self, model: torch.nn.Module, spec: InputSpec) -> Normalizer:
        # A 2D model folds time into the batch itself: its 5D input stays contiguous and
        # the channels-last weights set the layout of what follows.
        return Normalizer(spec, channels_last=self.channels_last
                          and getattr(model, "conv_dims", 0) == 3)

    def context(self) -> contextlib.ExitStack:
        """``inference_mode`` plus autocast to ``dtype`` (when set)."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(autocast(self.device, self.dtype))
        if self.device.type == "cuda":
            stack.enter_context(_tf32(self.tf32))
        return stack

    def __call__(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Float logits ``(B, K)`` of a normalised float clip batch ``(B, 3, T, H, W)``."""
        if self.channels_last and x.ndim == 5 and getattr(model, "conv_dims", 0) == 3:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with self.context():
            return model(x.to(self.device)).float()


def inference_path(precision: str, device: torch.device) -> InferencePath:
    """The default inference path of ``device`` (``precision="auto"``), or the one asked for.

    auto: CUDA -> bf16 autocast + channels-last + TF32 (bf16 when the GPU supports it);
    a CPU with native bf16 (AVX512-BF16 / AMX) -> bf16 autocast + channels-last; any
    other device -> fp32 + channels-last. ``fp32`` is exact eager fp32 in the model's
    channels-last layout; ``bf16`` where the device has no native bf16 is an error. The
    agreement of bf16 with fp32 on trained models is measured by benchmarks/bench_infer.py.
    """
    from momentlens.engine.runtime import cpu_has_native_bf16
    from momentlens.utils import MomentlensError

    if precision not in PRECISIONS:
        raise MomentlensError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        native = device.type == "cpu" and cpu_has_native_bf16()
    if precision == "bf16" and not native:
        raise MomentlensError(f"--precision bf16: {device.type} has no native bf16 support here")
    use_bf16 = precision == "bf16" or (precision == "auto" and native)
    return InferencePath(device, torch.bfloat16 if use_bf16 else None, channels_last=True,
                         tf32=device.type == "cuda" and precision != "fp32")


@contextlib.contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    # Scoped, not process-wide: code that runs after an inference pass in the same
    # process (CAM maps, a CPU/GPU comparison) keeps PyTorch's own TF32 settings.
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


#: ``--backend`` choices: ``auto`` is ONNX Runtime for an ``.onnx`` file, else torch.
BACKENDS = ("auto", "torch", "onnxruntime")


def join_ranks(device: str, model_path: Any, backend: str = "auto") -> DistInfo:
    """Join torchrun's process group, if launched by it and not joined already (NCCL on
    CUDA, gloo for the CPU and ONNX Runtime); one process: ``DistInfo()``. The group is
    left at the process's exit (:func:`momentlens.engine.distributed.setup` registers how),
    so every rank may return as soon as its part is done."""
    if not launched().enabled:
        return DistInfo()
    onnx = backend == "onnxruntime" or (backend == "auto"
                                        and str(model_path).lower().endswith(".onnx"))
    cuda = not onnx and (device == "cuda" or (device == "auto" and torch.cuda.is_available()))
    return dist_setup("cuda" if cuda else "cpu")


def load_for_inference(path: Any, device: str = "auto", precision: str = "auto",
                       backend: str = "auto", local_rank: int = 0
                       ) -> tuple[torch.nn.Module, dict[str, Any], InferencePath]:
    """``(model, meta, inference path)`` of a run folder, checkpoint, model file or
    exported ``.onnx`` (``backend="onnxruntime"``: the file, or the run folder's
    ``model.onnx``). The model is ready on the path's device (see :func:`inference_path`;
    CUDA device ``local_rank``); an ONNX model runs fp32 on ONNX Runtime's CPU provider."""
    from momentlens.engine.runtime import resolve_device
    from momentlens.utils import MomentlensError

    if backend not in BACKENDS:
        raise MomentlensError(f"unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = "onnxruntime" if str(path).lower().endswith(".onnx") else "torch"
    if backend == "onnxruntime":
        from momentlens.engine.export import load_onnx

        if precision == "bf16":
            raise MomentlensError("--backend onnxruntime runs fp32; drop --precision bf16")
        model, meta = load_onnx(path)
        return model, meta, InferencePath(torch.device("cpu"))
    from momentlens.engine.checkpoint import load_model

    fast = inference_path(precision, resolve_device(device, local_rank))
    model, meta = load_model(path, fast.device)
    return fast.prepare(model), meta, fast
