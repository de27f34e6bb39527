"""Overhead of the harness's training loop against a bare PyTorch loop doing the same work.

Measures training images/s of `prunebench.train.train_phases` (one phase of N epochs: a trace row,
a checkpoint written per epoch, per-step loss and accuracy bookkeeping) and of a bare loop with
the same model init, the same batches (`TensorData.batches` with the same per-epoch generator
seeds), the same SGD settings and the same number of steps, without checkpoint or trace. The
harness evaluates on the test split inside every epoch, so the bare loop makes the same
`prunebench.train.evaluate` call per epoch; the test split is cut to `--test-samples` images so
evaluation stays a small share of both. Both sides run alternately `--repeats` times after an
untimed warm-up of each, and the medians are compared, so drift on a shared machine biases
neither. In fp32 on CPU the two end with identical weights, which the output checks.

Goal: harness images/s >= 0.95 x bare.

Example:
    .venv/bin/python benchmarks/overhead.py --samples 10000 --epochs 3 --repeats 3 --json /tmp/overhead.json
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import machine, report
from tabulate import tabulate
from torch import nn

from prunebench.config import Recipe
from prunebench.data import DATASETS, TensorData, load_dataset, synthetic
from prunebench.errors import DatasetNotFound
from prunebench.models import ARCHS
from prunebench.train import autocast, epoch_seed, evaluate, train_phases

GOAL = 0.95


@dataclass(frozen=True)
class Timed:
    seconds: float
    samples: int  # training samples
    eval_seconds: float | None = None  # known for the bare loop only

    @property
    def rate(self) -> float:
        return self.samples / self.seconds


def load(name: str, data_root: Path | None, samples: int, test_samples: int) -> tuple[TensorData, TensorData, str]:
    """The dataset's splits (test cut to `test_samples`), or synthetic data of its shape if it is missing."""
    dataset = DATASETS.get(name)
    try:
        train, test = load_dataset(name, data_root)
        source = name
    except DatasetNotFound as e:
        print(f"note: {e}\nnote: measuring on synthetic data of the same shape instead.", file=sys.stderr)
        train, test = synthetic(samples, test_samples, dataset.input_shape, dataset.num_classes)
        source = f"synthetic {dataset.input_shape} ({name} not found)"
    if not isinstance(train, TensorData) or not isinstance(test, TensorData):
        raise SystemExit(f"{name} streams through a DataLoader; this benchmark wants a dataset held as tensors.")
    head = copy.copy(test)
    head.images, head.labels = test.images[:test_samples], test.labels[:test_samples]
    return train, head, source


def fresh_model(arch: str, name: str, seed: int, device: torch.device) -> nn.Module:
    """The model both sides start from, placed as the Harness places it (channels_last)."""
    dataset = DATASETS.get(name)
    torch.manual_seed(seed)
    model = ARCHS.get(arch).build(dataset.num_classes, dataset.input_shape[0])
    return model.to(device, memory_format=torch.channels_last)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def harness_loop(model: nn.Module, recipe: Recipe, train: TensorData, test: TensorData, seed: int,
                 shape: tuple[int, int, int], compiled: bool) -> Timed:
    """`train_phases`, its checkpoints in a fresh folder (an existing one would resume)."""
    device = next(model.parameters()).device
    with tempfile.TemporaryDirectory() as tmp:
        sync(device)
        start = time.perf_counter()
        trace = train_phases(model, [("pretrain", recipe)], train, test, seed=seed, input_shape=shape,
                             checkpoint=Path(tmp) / "checkpoint.pt", progress=False, compiled=compiled)
        sync(device)
        seconds = time.perf_counter() - start
    return Timed(seconds, sum(row.samples for row in trace.rows))


def bare_loop(model: nn.Module, recipe: Recipe, train: TensorData, test: TensorData, seed: int,
              compiled: bool) -> Timed:
    """A plain loop over the same batches, with the harness's evaluation after every epoch."""
    device = next(model.parameters()).device
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr.lr_at(0, recipe.epochs), momentum=recipe.momentum,
                                weight_decay=recipe.weight_decay, nesterov=recipe.nesterov)
    samples, eval_seconds = 0, 0.0
    sync(device)
    start = time.perf_counter()
    for epoch in range(recipe.epochs):
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr.lr_at(epoch, recipe.epochs)
        model.train()
        generator = torch.Generator().manual_seed(epoch_seed(seed, "pretrain", epoch))
        for x, y in train.batches(recipe.batch_size, generator=generator, augment=recipe.augment, pad=recipe.pad,
                                  samples=recipe.samples_per_epoch):
            with autocast(recipe.precision, device):
                out = forward(x)
            loss = F.cross_entropy(out.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            samples += len(y)
        sync(device)
        before = time.perf_counter()
        evaluate(model, test, precision=recipe.precision, forward=forward)  # what the harness does every epoch
        eval_seconds += time.perf_counter() - before
    sync(device)
    return Timed(time.perf_counter() - start, samples, eval_seconds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="fashion-mnist", help="registered dataset held as tensors")
    p.add_argument("--arch", default="smallcnn", help="registered architecture")
    p.add_argument("--data-root", type=Path, help="dataset root (default $PRUNEBENCH_DATA or the user cache)")
    p.add_argument("--samples", type=int, default=10_000, help="training samples per epoch")
    p.add_argument("--test-samples", type=int, default=1000, help="test images evaluated after every epoch")
    p.add_argument("--epochs", type=int, default=3, help="epochs per timed run")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--pad", type=int, default=4, help="zero padding of the random crop")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each side, alternating")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile the forward on both sides")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the Harness sets it
    train, test, source = load(args.dataset, args.data_root, args.samples, args.test_samples)
    train, test = train.to(device), test.to(device)
    shape = tuple(train.images.shape[1:])
    recipe = Recipe(epochs=args.epochs, lr="0:0.1", batch_size=args.batch_size, augment="crop+flip", pad=args.pad,
                    samples_per_epoch=args.samples, precision=args.precision)
    warmup = recipe.model_copy(update={"epochs": 1, "samples_per_epoch": 4 * args.batch_size})

    def side(name: str, r: Recipe) -> tuple[Timed, nn.Module]:
        model = fresh_model(args.arch, args.dataset, args.seed, device)
        if name == "harness":
            return harness_loop(model, r, train, test, args.seed, shape, args.compile), model
        return bare_loop(model, r, train, test, args.seed, args.compile), model

    for name in ("harness", "bare"):  # first-call costs (allocator, thread pools, compilation) out of the timing
        side(name, warmup)
    runs: dict[str, list[Timed]] = {"harness": [], "bare": []}
    finals: dict[str, nn.Module] = {}
    for r in range(args.repeats):
        for name in ("harness", "bare") if r % 2 == 0 else ("bare", "harness"):
            timed, finals[name] = side(name, recipe)
            runs[name].append(timed)

    rate = {name: statistics.median(t.rate for t in ts) for name, ts in runs.items()}
    ratio = rate["harness"] / rate["bare"]
    eval_share = statistics.median(t.eval_seconds / t.seconds for t in runs["bare"])
    pairs = zip(finals["harness"].state_dict().values(), finals["bare"].state_dict().values(), strict=True)
    diff = max((a - b).abs().max().item() for a, b in pairs if a.is_floating_point())
    table = [[name, f"{rate[name]:,.0f}", statistics.median(t.seconds for t in ts), ts[0].samples,
              " ".join(f"{t.rate:,.0f}" for t in ts)] for name, ts in runs.items()]
    print(tabulate(table, headers=["loop", "images/s (median)", "s per run (median)", "images per run",
                                   "images/s of each run"], floatfmt=".2f"))
    print(f"harness / bare = {ratio:.3f} (goal >= {GOAL}: {'met' if ratio >= GOAL else 'not met'})")
    print(f"both sides evaluate {len(test)} test images after each epoch ({eval_share:.1%} of the bare loop's "
          f"time); largest weight difference after the last runs: {diff:.3g} (0 on CPU: the same arithmetic)")
    print(f"data: {source}; {args.arch}, {args.epochs} epochs of {args.samples} samples, batch {args.batch_size}, "
          f"{args.precision}{', compiled' if args.compile else ''}, {args.repeats} repeats")
    figures = {"images_per_s": rate, "ratio": ratio, "goal": GOAL, "eval_share_bare": eval_share,
               "max_weight_diff": diff, "data": source,
               "runs": {name: [{"seconds": t.seconds, "samples": t.samples} for t in ts] for name, ts in runs.items()}}
    report(figures, machine(device), args)


if __name__ == "__main__":
    main()
