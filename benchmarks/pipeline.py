"""Training throughput of the harness against the pipeline published pruning code uses.

The published pipeline is the one of Li et al.'s L1-norm code and Liu et al.'s
rethinking-network-pruning (`cifar/l1-norm-pruning/main.py`): a torchvision CIFAR10-style
dataset (uint8 HWC numpy array, one `PIL.Image.fromarray` per item, then `RandomCrop(32,
padding=4)`, `RandomHorizontalFlip()`, `ToTensor()`, `Normalize`), a `DataLoader(batch_size=128,
shuffle=True, num_workers=2)`, fp32 NCHW and a plain SGD loop that reads the loss and the number
correct every step. The harness side is `prunebench.train.train_phases` with the CIFAR-10 training
images held on the device as a `TensorData` (batched pad-crop and flip there), channels_last (and
cuDNN autotuning on CUDA) as the Harness sets them, in fp32 and bf16 (and compiled with --compile).
Both sides train the same architecture on the same 50,000 images.

Images/s are measured over `--steps` optimizer steps after `--warmup` steps, evaluation
excluded: the harness side runs one epoch of warmup + steps + 1 batches as a pruning phase and
times it through the loop's per-step hook (a regulariser that adds nothing); the published loop
is timed at the same point of its steps. Seconds per epoch are extrapolated to 50,000 images.
`--concurrent N` starts N processes that train the harness variants on the same device at once
and prints their aggregate images/s (the published pipeline is not run then).

Goals: fp32 harness >= 1.5x the published pipeline on 2 CPU cores; on an H100, ResNet-56 at
batch 128 in <= 2 s per epoch and >= 5x the published pipeline.

Example:
    .venv/bin/python benchmarks/pipeline.py --arch resnet56 --steps 200 --warmup 20 --compile --json /tmp/pipeline.json
"""

from __future__ import annotations

import argparse
import copy
import itertools
import queue
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
import torchvision
from _common import machine, report
from PIL import Image
from tabulate import tabulate
from torch import nn

from prunebench.config import Recipe
from prunebench.data import CIFAR_STATS, TensorData, load_dataset
from prunebench.models import ARCHS
from prunebench.train import train_phases

EPOCH = 50_000  # CIFAR-10 training images
SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class Variant:
    pipeline: str  # "published" or "harness"
    precision: str = "fp32"
    compiled: bool = False

    @property
    def name(self) -> str:
        return f"{self.pipeline} {self.precision}" + (" compiled" if self.compiled else "")


@dataclass(frozen=True)
class Job:
    """What one measurement needs (it travels to the processes of --concurrent)."""

    arch: str
    batch_size: int
    warmup: int
    steps: int
    workers: int
    device: str
    seed: int
    data_root: str | None


class StepClock:
    """Times steps [warmup, warmup + steps): called once per step at the same point of each step
    (after the forward), a full step apart. In the harness it is the pruning phase's regulariser,
    the loop's per-step hook; it returns None, so the loss is unchanged."""

    def __init__(self, warmup: int, steps: int, device: torch.device) -> None:
        self.marks = (warmup, warmup + steps)
        self.device = device
        self.times: list[tuple[float, float]] = []  # (perf_counter, wall clock) at the two marks

    def __call__(self, model: nn.Module, step: int) -> None:
        if step in self.marks:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.times.append((time.perf_counter(), time.time()))

    @property
    def done(self) -> bool:
        return len(self.times) == 2

    def result(self, images: int) -> dict[str, float]:
        (t0, w0), (t1, w1) = self.times
        return {"images": images, "seconds": t1 - t0, "images_per_s": images / (t1 - t0), "start": w0, "end": w1}


class CIFAR10Like(torch.utils.data.Dataset):
    """What `torchvision.datasets.CIFAR10.__getitem__` does: a PIL image per item, then the transform."""

    def __init__(self, images: np.ndarray, targets: list[int], transform: Any) -> None:
        self.data, self.targets, self.transform = images, targets, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.data[index])), self.targets[index]


def build(arch: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return ARCHS.get(arch).build(10, 3)


def published(job: Job, train: TensorData) -> dict[str, float]:
    device = torch.device(job.device)
    torch.backends.cudnn.benchmark = False  # the published code leaves cuDNN's default
    t = torchvision.transforms
    mean, std = CIFAR_STATS["cifar10"]
    transform = t.Compose([t.RandomCrop(32, padding=4), t.RandomHorizontalFlip(), t.ToTensor(), t.Normalize(mean, std)])
    images = np.ascontiguousarray(train.images.permute(0, 2, 3, 1).cpu().numpy())  # HWC, as CIFAR10.data
    loader = torch.utils.data.DataLoader(CIFAR10Like(images, train.labels.tolist(), transform),
                                         batch_size=job.batch_size, shuffle=True, num_workers=job.workers,
                                         pin_memory=device.type == "cuda")
    model = build(job.arch, job.seed).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    clock = StepClock(job.warmup, job.steps, device)
    model.train()
    avg_loss, correct = 0.0, 0
    for step, (x, y) in enumerate(itertools.chain.from_iterable(itertools.repeat(loader))):
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        out = model(x)
        loss = F.cross_entropy(out, y)
        clock(model, step)
        if clock.done:
            break
        avg_loss += loss.item()
        correct += out.argmax(1).eq(y).cpu().sum().item()
        loss.backward()
        optimizer.step()
    return clock.result(job.steps * job.batch_size)


def harness(job: Job, variant: Variant, train: TensorData, test: TensorData) -> dict[str, float]:
    device = torch.device(job.device)
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda  # as Harness.set_device
    recipe = Recipe(epochs=1, lr="0:0.1", batch_size=job.batch_size, augment="crop+flip", pad=4,
                    samples_per_epoch=(job.warmup + job.steps + 1) * job.batch_size, precision=variant.precision)
    model = build(job.arch, job.seed).to(device, memory_format=torch.channels_last)
    clock = StepClock(job.warmup, job.steps, device)
    with tempfile.TemporaryDirectory() as tmp:
        train_phases(model, [("prune", recipe)], train, test, seed=job.seed, input_shape=SHAPE,
                     checkpoint=Path(tmp) / "checkpoint.pt", regularizer=clock, progress=False,
                     compiled=variant.compiled)
    return clock.result(job.steps * job.batch_size)


def on_device(job: Job) -> tuple[TensorData, TensorData]:
    """CIFAR-10 on the device; the test split cut to one batch (evaluated once, after the timed steps)."""
    train, test = load_dataset("cifar10", Path(job.data_root) if job.data_root else None)
    assert isinstance(train, TensorData) and isinstance(test, TensorData)
    head = copy.copy(test)
    head.images, head.labels = test.images[:job.batch_size], test.labels[:job.batch_size]
    return train.to(job.device), head.to(job.device)


def _concurrent(job: Job, variant: Variant, threads: int, barrier: Any, results: Any) -> None:
    torch.set_num_threads(threads)
    train, test = on_device(job)
    barrier.wait()  # every process has its data: start together
    results.put(harness(job, variant, train, test))


def concurrent(job: Job, variant: Variant, n: int, threads: int) -> dict[str, float]:
    """N processes training `variant` at once; aggregate images/s over the span of their timed steps."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_concurrent, args=(replace(job, seed=job.seed + i), variant, threads, barrier, results))
             for i in range(n)]
    for proc in procs:
        proc.start()
    runs: list[dict[str, float]] = []
    while len(runs) < n:
        try:
            runs.append(results.get(timeout=5))
        except queue.Empty:
            if any(proc.exitcode not in (None, 0) for proc in procs):
                for proc in procs:
                    proc.terminate()  # the others would wait at the barrier for ever
                raise SystemExit("a concurrent process failed; its traceback is above") from None
    for proc in procs:
        proc.join()
    span = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    images = sum(r["images"] for r in runs)
    return {"images": images, "seconds": span, "images_per_s": images / span, "processes": n,
            "per_process_images_per_s": [r["images_per_s"] for r in runs]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet20", choices=("resnet20", "resnet56"))
    p.add_argument("--data-root", type=Path, help="dataset root (default $PRUNEBENCH_DATA or the user cache)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=50, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=10, help="untimed optimizer steps before them")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the published pipeline")
    p.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"],
                   help="harness precisions to measure")
    p.add_argument("--compile", action="store_true", help="also measure the harness with torch.compile")
    p.add_argument("--concurrent", type=int, default=0, metavar="N",
                   help="N processes train each harness variant at once on the device (no published run)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; with --concurrent, "
                   "shared out among the processes on CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    job = Job(args.arch, args.batch_size, args.warmup, args.steps, args.workers, args.device, args.seed,
              str(args.data_root) if args.data_root else None)
    variants = [Variant("harness", precision, compiled)
                for compiled in ([False, True] if args.compile else [False]) for precision in args.precision]
    measured: dict[str, dict[str, Any]] = {}
    if args.concurrent:
        threads = torch.get_num_threads()
        if job.device == "cpu":
            threads = max(1, threads // args.concurrent)
        for variant in variants:
            measured[variant.name] = concurrent(job, variant, args.concurrent, threads)
    else:
        train, test = on_device(job)
        measured["published fp32"] = published(job, train.to("cpu"))
        for variant in variants:
            measured[variant.name] = harness(job, variant, train, test)

    reference = measured.get("published fp32", {}).get("images_per_s")
    table = []
    for name, m in measured.items():
        if reference:
            m["vs_published"] = m["images_per_s"] / reference
        m["s_per_epoch"] = EPOCH / m["images_per_s"]
        each = " ".join(f"{r:,.0f}" for r in m.get("per_process_images_per_s", []))
        table.append([name, f"{m['images_per_s']:,.0f}", m["s_per_epoch"],
                      each if args.concurrent else f"{m['vs_published']:.2f}x"])
    if args.concurrent:
        headers = ["pipeline", f"images/s, {args.concurrent} processes together", "s/epoch (50k)",
                   "images/s of each process"]
    else:
        headers = ["pipeline", "images/s", "s/epoch (50k)", "vs published"]
    print(tabulate(table, headers=headers, floatfmt=".2f"))
    print(f"{args.arch}, batch {args.batch_size}, {args.steps} timed steps after {args.warmup}; " + (
        f"{args.concurrent} processes at once, seeds {args.seed}..{args.seed + args.concurrent - 1}" if args.concurrent
        else f"published: {args.workers} DataLoader workers, fp32 NCHW"
        + (", cuDNN autotuning off as in its code" if torch.device(args.device).type == "cuda" else "")))
    goals(args, measured)
    report(measured, machine(args.device), args)


def goals(args: argparse.Namespace, measured: dict[str, dict[str, Any]]) -> None:
    """The goals, with what this run measured towards them (the settings they are stated for in brackets)."""
    fp32 = measured.get("harness fp32", {}).get("vs_published")
    if torch.device(args.device).type == "cpu":
        got = f"{fp32:.2f}x" if fp32 else "not measured here"
        print(f"goal (2 CPU cores): harness fp32 >= 1.5x published: {got}")
        return
    harness = [m for name, m in measured.items() if name.startswith("harness")]
    best = min(harness, key=lambda m: m["s_per_epoch"])
    setting = "" if (args.arch, args.batch_size) == ("resnet56", 128) else \
        f" [stated for resnet56, batch 128; this run: {args.arch}, batch {args.batch_size}]"
    print(f"goal (H100): <= 2 s/epoch: best harness variant {best['s_per_epoch']:.2f} s/epoch{setting}")
    ratio = best.get("vs_published")
    print(f"goal (H100): >= 5x published: {f'{ratio:.2f}x' if ratio else 'not measured here'}{setting}")


if __name__ == "__main__":
    main()
