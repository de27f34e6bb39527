"""Training the harness saves on a grid, against one script per run.

For M methods x R ratios x S seeds under one or several protocols, counts the epochs (and
training FLOPs: samples x 3 x 2 x forward MACs, `prunebench.flops.training_flops`) the harness
trains, as `Harness.plan` lays each grid out, against what a script-per-run approach trains.
The harness trains each *computation* once (`Planned.computation`: base, plan content, recipes,
penalty, seed): a seed's base is shared by every method, ratio and setup; a pruned run repeated
under several setups with the same base, plan and recipe trains once; scratch baselines of equal
architectures (Scratch-B of l1norm and of random at one ratio) train once. A script per run
trains every pruned run's own base, then its pruning and retraining, and every scratch baseline
as its own run, in every setup. With several protocols, a last block counts them together (the
sharing across setups). Planning trains nothing (the store is a temporary folder); plans are made
on untrained models, as the dry run makes them.

Example:
    .venv/bin/python benchmarks/grid.py --protocol S2 SX-A SX-B --json /tmp/grid.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import machine, report
from tabulate import tabulate

from prunebench.flops import training_flops
from prunebench.protocol_files import load_protocol
from prunebench.runner import Harness, Planned

KINDS = ("base", "pruned", "scratch")


def phase_flops(harness: Harness, planned: Planned) -> int:
    """Training FLOPs of a run: the dense model's MACs while dense (pretrain, prune), the run's own after."""
    total = 0
    for phase, recipe in planned.spec.phases:
        macs = harness.dense_macs if phase in ("pretrain", "prune") else planned.macs
        total += training_flops(recipe.epochs * (recipe.samples_per_epoch or harness.dataset.train_size), macs)
    return total


def planned_grid(harness: Harness, methods: list[str], ratios: list[float], seeds: list[int]) -> list[Planned]:
    """Every run of one protocol's grid (each once, by run id), in the order the harness runs them."""
    runs: dict[str, Planned] = {}
    for ratio in ratios:
        for planned in harness.plan(methods, seeds, ratio):
            runs.setdefault(planned.spec.run_id, planned)
    return list(runs.values())


def count(grids: list[tuple[Harness, list[Planned]]]) -> dict[str, dict]:
    """Runs, trainings, epochs and FLOPs per kind of run, for the harness (each computation once,
    across all `grids`) and for one script per run (every run, each pruned run with its own base)."""
    zero = {"runs": 0, "trained": 0, "epochs": 0, "flops": 0}
    out = {side: {kind: dict(zero) for kind in KINDS} for side in ("harness", "script")}
    trained: set[str] = set()
    for harness, runs in grids:
        by_id = {planned.spec.run_id: planned for planned in runs}
        for planned in runs:
            kind, epochs, flops = planned.spec.kind, planned.spec.epochs(), phase_flops(harness, planned)
            assert planned.computation is not None
            row = out["harness"][kind]
            row["runs"] += 1
            if planned.computation not in trained:  # the harness trains a computation once
                trained.add(planned.computation)
                row["trained"], row["epochs"], row["flops"] = row["trained"] + 1, row["epochs"] + epochs, \
                    row["flops"] + flops
            if kind == "base":
                continue  # a script trains its base inside each pruned run
            row = out["script"][kind]
            row["runs"], row["trained"] = row["runs"] + 1, row["trained"] + 1
            row["epochs"], row["flops"] = row["epochs"] + epochs, row["flops"] + flops
            if kind == "pruned":  # the script trains the run's base first, inside the same run
                base = by_id[planned.spec.base]
                row = out["script"]["base"]
                row["epochs"] += base.spec.epochs()
                row["flops"] += phase_flops(harness, base)
    for side in out.values():
        side["total"] = {key: sum(side[kind][key] for kind in KINDS) for key in zero}
    return out


def rows(label: str, counted: dict[str, dict]) -> list[list]:
    table = []
    for kind in (*KINDS, "total"):
        h, s = counted["harness"][kind], counted["script"][kind]
        if not h["runs"] and not s["runs"] and not s["epochs"]:
            continue
        script_runs = s["runs"] if kind != "base" else f"(in {counted['script']['pruned']['runs']} pruned)"
        table.append([label, kind, h["runs"], h["trained"], script_runs, h["epochs"], s["epochs"],
                      f"{s['epochs'] / h['epochs']:.2f}x", f"{h['flops']:.3g}", f"{s['flops']:.3g}",
                      f"{s['flops'] / h['flops']:.2f}x"])
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", nargs="+", default=["S2"], help="setup names (e.g. S2 SX-B) or protocol files")
    p.add_argument("--suite", default="fmnist-smallcnn")
    p.add_argument("--method", action="append", help="method, as `bench run` takes it; repeat for several "
                   "(default: l1norm, random, magnitude)")
    p.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = p.parse_args()
    args.method = args.method or ["l1norm", "random", "magnitude"]

    figures, table, grids = {}, [], []
    with tempfile.TemporaryDirectory() as store:
        for name in args.protocol:
            protocol, path, sha = load_protocol(name, args.suite)
            harness = Harness(protocol, store=Path(store), protocol_sha256=sha, device="cpu", progress=False)
            grids.append((harness, planned_grid(harness, args.method, args.ratios, args.seeds)))
            counted = count(grids[-1:])
            figures[protocol.setup] = {"protocol_file": str(path), "protocol_sha256": sha, **counted}
            table += rows(protocol.setup, counted)
        if len(grids) > 1:
            together = "+".join(h.setup for h, _ in grids)
            figures[together] = count(grids)
            table += rows(together, figures[together])
    print(tabulate(table, headers=["protocol", "runs of", "runs harness", "trained harness", "runs script-per-run",
                                   "epochs harness",
                                   "epochs script-per-run", "saving", "train FLOPs harness",
                                   "train FLOPs script-per-run", "saving (FLOPs)"], disable_numparse=True))
    print(f"suite {args.suite}; {len(args.method)} methods ({', '.join(args.method)}) x {len(args.ratios)} ratios "
          f"({' '.join(f'{r:g}' for r in args.ratios)}) x {len(args.seeds)} seeds; planned, nothing trained")
    report(figures, machine("cpu"), args)


if __name__ == "__main__":
    main()
