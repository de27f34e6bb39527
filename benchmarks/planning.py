"""What planning costs: a grid planned (and, with --train, trained) through the harness, timed.

Since method code moved out of the training process (the closed division), every plan, intent and
declaration is a round trip to a planning worker: the weights and, for methods that need data,
the training split are handed over, and the plan comes back as data. This script times the same
grid with whatever `prunebench` it imports, so the figure before the change comes from running it
against the older code (e.g. `PYTHONPATH=<a checkout of the older commit, packaged>`).

Printed: seconds to start planning (importing the methods: into this process before the change,
into the planning worker after, with the worker's start and the catalogue), seconds to plan the
whole grid without training (`bench run --dry-run`'s work: every method's plan on a fresh model of
each seed), and with --train the wall time of training the grid from an empty store.

Example (27 runs: 8 methods and the dense base, 3 seeds):
    .venv/bin/python benchmarks/planning.py --protocol S2 --seeds 0 1 2 --json /tmp/planning.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, report  # noqa: E402

METHODS = ["l1norm", "random", "magnitude", "taylor", "slimming", "greg", "thinet", "lottery"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", default="fmnist-smallcnn")
    p.add_argument("--protocol", default="S2")
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--sandbox", default="auto", help="auto, on or off (ignored by code without a planning worker)")
    p.add_argument("--train", action="store_true", help="also train the grid from an empty store")
    p.add_argument("--data-root", type=Path)
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    import torch

    import prunebench.runner as runner
    from prunebench.protocol_files import load_protocol

    torch.set_num_threads(torch.get_num_threads())
    protocol, _, sha = load_protocol(args.protocol, args.suite)
    worker = hasattr(runner.Harness, "planner")
    extra = {"sandbox": args.sandbox} if worker else {}
    figures: dict[str, float | int | str | bool] = {"planning_worker": worker}
    with tempfile.TemporaryDirectory() as store:
        started = time.perf_counter()  # the methods imported: in this process before, in the worker now
        h = runner.Harness(protocol, store=Path(store), protocol_sha256=sha, data_root=args.data_root, device="cpu",
                           progress=False, log=lambda m: None, **extra)
        if worker:
            h.planner.catalogue()
            figures["sandboxed"] = h.planner.sandboxed
        figures["start_s"] = round(time.perf_counter() - started, 2)
        h.data()  # loaded once, before timing the plans (both versions read it the same way)
        started = time.perf_counter()
        planned = h.plan(args.methods, args.seeds)
        figures["runs"] = len(planned)
        figures["plan_grid_s"] = round(time.perf_counter() - started, 2)
        if args.train:
            started = time.perf_counter()
            h.run(args.methods, args.seeds)
            figures["train_grid_s"] = round(time.perf_counter() - started, 1)
    print(f"{'planning worker' if worker else 'in-process planning'}: " + ", ".join(f"{k} {v}" for k, v in
                                                                               figures.items()))
    report(figures, machine(), args)


if __name__ == "__main__":
    main()
