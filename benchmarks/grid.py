"""Training the harness saves on a grid by sharing base models, against one script per run.

For M methods x R ratios x S seeds under a protocol, counts the epochs (and training FLOPs:
samples x 3 x 2 x forward MACs, `prunebench.flops.training_flops`) the harness trains, as
`Harness.plan` lays the grid out for each ratio, runs deduplicated by run id (a seed's base is
trained once and shared by every method and ratio), against what a script-per-run approach
trains: every pruned run trains its own base from scratch, then its own pruning and
retraining; every scratch baseline is its own run. Pruning and retraining epochs and the
scratch baselines are the same on both sides; the saving comes from the bases. Planning trains
nothing (the store is a temporary folder).

Example:
    .venv/bin/python benchmarks/grid.py --protocol S2 SX-B --json /tmp/grid.json
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


def count(harness: Harness, methods: list[str], ratios: list[float], seeds: list[int]) -> dict[str, dict]:
    """Runs, epochs and FLOPs per kind of run, for the harness and for one script per run."""
    runs: dict[str, Planned] = {}
    for ratio in ratios:
        for planned in harness.plan(methods, seeds, ratio):
            runs.setdefault(planned.spec.run_id, planned)
    zero = {"runs": 0, "epochs": 0, "flops": 0}
    out = {side: {kind: dict(zero) for kind in KINDS} for side in ("harness", "script")}
    for planned in runs.values():
        kind, epochs, flops = planned.spec.kind, planned.spec.epochs(), phase_flops(harness, planned)
        for side in ("harness", "script"):
            if side == "harness" or kind != "base":  # one script per pruned or scratch run
                row = out[side][kind]
                row["runs"], row["epochs"], row["flops"] = row["runs"] + 1, row["epochs"] + epochs, row["flops"] + flops
        if kind == "pruned":  # the script trains the run's base first, inside the same run
            base = runs[planned.spec.base]
            row = out["script"]["base"]
            row["epochs"] += base.spec.epochs()
            row["flops"] += phase_flops(harness, base)
    for side in out.values():
        side["total"] = {key: sum(side[kind][key] for kind in KINDS) for key in zero}
    return out


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

    figures, table = {}, []
    for name in args.protocol:
        protocol, path, sha = load_protocol(name, args.suite)
        with tempfile.TemporaryDirectory() as store:
            harness = Harness(protocol, store=Path(store), protocol_sha256=sha, device="cpu", progress=False)
            counted = count(harness, args.method, args.ratios, args.seeds)
        figures[protocol.setup] = {"protocol_file": str(path), "protocol_sha256": sha, **counted}
        for kind in (*KINDS, "total"):
            h, s = counted["harness"][kind], counted["script"][kind]
            if not h["runs"] and not s["runs"] and not s["epochs"]:
                continue
            script_runs = s["runs"] if kind != "base" else f"(in {counted['script']['pruned']['runs']} pruned)"
            table.append([protocol.setup, kind, h["runs"], script_runs, h["epochs"], s["epochs"],
                          f"{s['epochs'] / h['epochs']:.2f}x", f"{h['flops']:.3g}", f"{s['flops']:.3g}",
                          f"{s['flops'] / h['flops']:.2f}x"])
    print(tabulate(table, headers=["protocol", "runs of", "runs harness", "runs script-per-run", "epochs harness",
                                   "epochs script-per-run", "saving", "train FLOPs harness",
                                   "train FLOPs script-per-run", "saving (FLOPs)"], disable_numparse=True))
    print(f"suite {args.suite}; {len(args.method)} methods ({', '.join(args.method)}) x {len(args.ratios)} ratios "
          f"({' '.join(f'{r:g}' for r in args.ratios)}) x {len(args.seeds)} seeds; planned, nothing trained")
    report(figures, machine("cpu"), args)


if __name__ == "__main__":
    main()
