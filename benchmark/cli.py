"""`bench`: the only code that parses arguments. It builds specs and calls the library."""

from __future__ import annotations

if __name__ == "__main__":  # `python -m prunebench.cli`: note Ctrl-C / SIGTERM from the first moment
    from prunebench import signals as _early

    _early.install(raising=False)

import argparse
import json
import math
import os
import sys
from pathlib import Path

# glibc's heuristics otherwise return and re-fetch large training buffers from the OS every step
os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(64 * 1024 * 1024))
os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", str(128 * 1024 * 1024))

from tabulate import tabulate

import prunebench
from prunebench import paths, records, signals
from prunebench.errors import ProtocolViolation, UserError

LIST_KINDS = ("archs", "datasets", "suites", "methods", "protocols")


def _grid_arguments(p: argparse.ArgumentParser, protocol: str, method: str) -> None:
    """The arguments of a command that trains a grid (`run`, `crossval`)."""
    p.add_argument("--protocol", required=True, help=protocol)
    p.add_argument("--suite", default=None, help="suite (default: the protocol file's, else fmnist-smallcnn)")
    p.add_argument("--method", action="append", required=True, help=method)
    p.add_argument("--plugins", action="append", default=[], metavar="FILE_OR_MODULE",
                   help="a Python file or module that registers more methods; repeatable")
    _division_arguments(p)
    target = p.add_mutually_exclusive_group()
    target.add_argument("--ratio", type=float, help="uniform pruning ratio in [0, 1)")
    target.add_argument("--config", help="named layer-wise config of the architecture (e.g. A)")
    target.add_argument("--speedup", type=float, help="speedup target: dense MACs / pruned MACs (effective MACs for "
                        "weight-level methods), e.g. 2; the harness searches each method's ratio to within 1%% of it")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the suite's)")
    p.add_argument("--store", type=Path, help=f"run store (default ${paths.STORE_ENV} or the user cache)")
    p.add_argument("--data-root", type=Path, help=f"dataset root, which must exist (default ${paths.DATA_ENV}, else "
                   "the user cache, where Debian's Fashion-MNIST is also looked for)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--compile", action="store_true",
                   help="train through torch.compile (an execution setting: the same recipe and run ids)")
    ex = p.add_argument_group("parallel runs (Ray: pip install 'prunebench[ray]')")
    ex.add_argument("--executor", choices=("sequential", "ray"), default="sequential",
                    help="sequential: one run after another in this process (default); ray: runs in parallel "
                    "as Ray tasks, bases first")
    ex.add_argument("--ray-address", metavar="ADDRESS",
                    help="a running Ray cluster (e.g. auto, or ray://head:10001); default: a local Ray instance "
                    "on this machine. Every node must see --store at the same path")
    ex.add_argument("--gpus-per-run", type=float, metavar="G",
                    help="GPUs each run asks for; 0.25 packs four runs on one GPU (default: 1 if this machine "
                    "has a GPU, else 0)")
    ex.add_argument("--cpus-per-run", type=float, default=1.0, metavar="C", help="CPUs each run asks for (default 1)")


def _division_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--division", choices=("closed", "open"), default="closed",
                   help="closed (default): method code runs only in a separate planning worker and returns data; "
                   "open: method code runs inside training (needed for a method's own regularizer), every row "
                   "labelled open and ranked apart")
    p.add_argument("--sandbox", choices=("auto", "on", "off"), default="auto",
                   help="run the planning worker under bubblewrap (no network, nothing writable, no view of the "
                   "store or data roots); auto: when `bwrap` works, else built-ins unsandboxed and plug-ins refused. "
                   "Every run records whether it was")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="prunebench: comparable pruning results.")
    p.add_argument("--version", action="version", version=f"prunebench {prunebench.__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a protocol for one or more methods and print the results")
    _grid_arguments(run, protocol="setup name (e.g. SX-B) or a protocol YAML file",
                    method="registered method, optionally with settings: NAME or NAME:KEY=VALUE[,KEY=VALUE] "
                    "(e.g. magnitude:scope=global); repeat for several")
    run.add_argument("--dry-run", action="store_true", help="show the planned runs without training")
    run.add_argument("--json", action="store_true", help="print the result rows as JSON")

    cv = sub.add_parser("crossval", help="cross-validate two methods' retraining recipes (Wang et al. Sec. 5): "
                        "all four (method, recipe) pairings, the winner under each recipe, the verdict")
    _grid_arguments(cv, protocol="setup name or protocol YAML file; one that leaves the retraining LR free "
                    "(S1, S2, S3.1, SX-A, SX-B)",
                    method="exactly two methods, each NAME or NAME:KEY=VALUE[,...]; a method's recipe is its "
                    "retrain_lr setting (or its own choice), else the protocol's")
    cv.add_argument("--json", action="store_true", help="print a JSON object")

    rp = sub.add_parser("report", help="write leaderboards (Markdown, one HTML page, PNG plots) from the store's "
                        "SQLite index")
    rp.add_argument("--suite", help="only this suite (default: every suite in the store)")
    rp.add_argument("--protocol", help="only this setup, e.g. SX-B (default: every setup in the store)")
    rp.add_argument("--reference", help="row every other row is tested against, e.g. l1norm or 'Scratch-B of "
                    "l1norm' (default: each method's scratch baseline under SX-A/SX-B, l1norm otherwise)")
    rp.add_argument("--out", type=Path, default=Path("reports"), help="output folder (default: reports/)")
    rp.add_argument("--store", type=Path, help=f"run store (default ${paths.STORE_ENV} or the user cache)")
    rp.add_argument("--json", action="store_true", help="also print the tables as JSON")
    rp.add_argument("--verify", action="store_true",
                    help="verify every run of the tables first (`bench verify`) and leave out rows whose runs fail")
    rp.add_argument("--data-root", type=Path, help="dataset root for --verify's re-evaluation (as for `bench run`)")

    ve = sub.add_parser("verify", help="re-derive finished runs from their files in a fresh process: model sha256, "
                        "architecture from the plan, target, MACs, test accuracy, trace re-audit, index")
    ve.add_argument("runs", nargs="*", metavar="RUN", help="run ids or unique prefixes (default: every finished run)")
    ve.add_argument("--store", type=Path, help=f"run store (default ${paths.STORE_ENV} or the user cache)")
    ve.add_argument("--data-root", type=Path, help="dataset root for the re-evaluation (as for `bench run`)")
    ve.add_argument("--device", default="cpu", help="torch device of the re-evaluation (default cpu)")
    ve.add_argument("--json", action="store_true", help="print a JSON list")

    ex = sub.add_parser("export", help="copy the records of a store's finished runs (everything but their weights, "
                        "with their last verification) into a folder that `bench report --store` reads: a leaderboard "
                        "trained in parts, committed without its store")
    ex.add_argument("--store", type=Path, help=f"run store to export from (default ${paths.STORE_ENV} or the user cache)")
    ex.add_argument("--out", type=Path, required=True, help="folder of run records; runs already there must be the "
                    "same records")
    ex.add_argument("runs", nargs="*", metavar="RUN", help="only these finished runs, ids or unique prefixes (default: "
                    "every finished run): a part that trained other runs again only to get to these, e.g. a scratch "
                    "baseline's base and pruned run on another machine, adds just these")
    ex.add_argument("--suite", help="only this suite's runs (default: every run)")

    va = sub.add_parser("validate", help="check a protocol file; show what it fixes and what it leaves free")
    va.add_argument("file", type=Path, help="protocol YAML file")

    co = sub.add_parser("compare", help="the strictest setup under which two stored runs are comparable")
    co.add_argument("run_a", help="run id (or a unique prefix)")
    co.add_argument("run_b", help="run id (or a unique prefix)")
    co.add_argument("--store", type=Path, help=f"run store (default ${paths.STORE_ENV} or the user cache)")
    co.add_argument("--json", action="store_true", help="print a JSON object")

    ls = sub.add_parser("list", help="list registered names")
    ls.add_argument("kind", choices=LIST_KINDS)
    ls.add_argument("--plugins", action="append", default=[], metavar="FILE_OR_MODULE",
                    help="a Python file or module that registers more methods; repeatable")
    ls.add_argument("--sandbox", choices=("auto", "on", "off"), default="auto",
                    help="list methods from a sandboxed planning worker (auto: when `bwrap` works, else plug-ins are "
                    "refused)")

    fl = sub.add_parser("flops", help="forward MACs and parameters of an architecture: the dense model "
                        "and each named config, or the one --config / --ratio")
    fl.add_argument("--arch", required=True, help="architecture name")
    fl.add_argument("--config", help="named pruned config (e.g. A)")
    fl.add_argument("--ratio", type=float, help="uniform pruning ratio of the prunable convs")
    fl.add_argument("--json", action="store_true",
                    help="print JSON: an object for --config / --ratio, else a list of rows")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        if argv is None:  # the `bench` program itself (not a caller's main([...])): it owns the signals
            signals.install()
        args = _parser().parse_args(argv)
        commands = {"run": cmd_run, "list": cmd_list, "flops": cmd_flops, "validate": cmd_validate,
                    "compare": cmd_compare, "crossval": cmd_crossval, "report": cmd_report, "verify": cmd_verify,
                    "export": cmd_export}
        return commands[args.command](args)
    except (KeyboardInterrupt, signals.Terminated) as e:
        return _stopped(e)
    except Exception as e:
        if (signum := signals.received()) is not None:  # a follow-on error of an interrupted import or write
            return _stopped(signals.exception_for(signum))
        if isinstance(e, UserError):
            print(f"bench: error: {e}", file=sys.stderr)
            return 2
        if isinstance(e, ProtocolViolation):
            where = (f"Run {e.recorded[:12]} is marked violated in the store and will not enter a leaderboard."
                     if e.recorded else "It was found while planning, before the run it concerns started; nothing of that run "
                     "was trained or stored.")
            print(f"bench: protocol violation: {e}. {where}", file=sys.stderr)
            return 3
        raise


def _stopped(e: BaseException) -> int:
    """One line and the shell's exit status for a signal: 130 for Ctrl-C, 143 for SIGTERM."""
    what, code = ("interrupted", 130) if isinstance(e, KeyboardInterrupt) else ("terminated (SIGTERM)", 143)
    print(f"bench: {what}; run the same command again to resume.", file=sys.stderr)
    return code


def _print_rules(protocol, base_epochs: int) -> None:
    from prunebench.setups import describe

    fixed, left = describe(protocol, base_epochs)
    print(f"Fixed by {protocol.setup} (Wang et al. Tab. 2):")
    print(tabulate(fixed, tablefmt="plain"))
    print("Left to the method (its declared choice, else the protocol's default):")
    print(tabulate(left, tablefmt="plain") if left else "  nothing")


def cmd_validate(args: argparse.Namespace) -> int:
    from prunebench.protocol_files import load_protocol, load_suites

    if not args.file.exists():
        raise UserError(f"protocol file {args.file} does not exist.")
    protocol, path, sha = load_protocol(str(args.file))
    suite = load_suites().get(protocol.suite)
    base = suite.base.truncated(protocol.pf_epochs[0]) if protocol.pf_epochs else suite.base
    targets = ([f"ratio {r:g}" for r in protocol.ratios] + [f"speedup {x:g}x" for x in protocol.speedups]
               + [f"config {c}" for c in protocol.configs])
    print(f"{path}: valid {protocol.setup} protocol of suite {protocol.suite} (sha256 {sha[:12]})")
    print(f"targets: {', '.join(targets)}" + (f"; P/F schedule {protocol.pf}" if protocol.pf else ""))
    floor = protocol.protect
    print(f"protected layers: every prunable layer keeps at least {floor.min_filters} filter(s)"
          + (f" and {floor.min_fraction:g} of its filters (rounded up); each masked weight tensor {floor.min_fraction:g}"
             " of its weights" if floor.min_fraction else "") + ", whatever the method")
    if protocol.scratch_variant:
        print(f"scratch baseline: {protocol.scratch_variant}")
    _print_rules(protocol, base.epochs)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from prunebench.compare import compare_ids

    result = compare_ids(args.store or paths.default_store(), args.run_a, args.run_b)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    a, b = result["a"][:12], result["b"][:12]
    if result["strictest"] is None:
        br = result["breaks"]
        print(f"{a} and {b} are not comparable under any setup: {br['words']} differs ({br['a']} vs {br['b']}).")
    else:
        print(f"{a} and {b} are comparable under {result['strictest']}.")
        if result["breaks"]:
            br = result["breaks"]
            print(f"{br['setup']} breaks on {br['rule']} ({br['words']}): {br['a']} vs {br['b']}.")
        else:
            print("They meet every setup of the ladder S1 ... S4.2.")
    for setup, sx in result["sx"].items():
        verdict = "comparable" if sx["comparable"] else f"not comparable: {sx['rule']} {sx['a']} vs {sx['b']}"
        print(f"{setup}: {verdict}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    # each kind imports only what it lists: suites and protocols are YAML files (no torch)
    from prunebench.protocol_files import list_protocols, load_suites

    if args.kind == "archs":
        from prunebench.models import ARCHS

        rows = [(n, ARCHS.get(n).description, ", ".join(sorted(ARCHS.get(n).configs)) or "-") for n in ARCHS]
        print(tabulate(rows, headers=["architecture", "description", "named configs"]))
    elif args.kind == "datasets":
        from prunebench.data import DATASETS

        print(tabulate([(n, DATASETS.get(n).description) for n in DATASETS], headers=["dataset", "description"]))
    elif args.kind == "suites":
        suites = load_suites()
        rows = [(n, suites.get(n).dataset, suites.get(n).arch, suites.get(n).description) for n in suites]
        print(tabulate(rows, headers=["suite", "dataset", "arch", "description"]))
    elif args.kind == "methods":
        from prunebench.planning import ClosedPlanner

        methods = ClosedPlanner(_plugin_paths(args.plugins), args.sandbox).catalogue()
        rows = []
        for n, m in sorted(methods.items()):
            code = "own code (open division only)" if m.own_code_in_loop else m.penalty or "-"
            rows.append((n, m.granularity, "yes" if m.needs_data else "no",
                         "own" if m.prune_phase else "-", code, ", ".join(m.hooks) or "-",
                         ", ".join(f"{k}={d}" for k, d, _ in m.settings) or "-", m.origin, m.description))
        print(tabulate(rows, headers=["method", "granularity", "data", "pruning phase", "penalty", "hooks",
                                      "settings (defaults)", "from", "description"]))
    else:
        print(tabulate([(s, setup, str(p)) for s, setup, p in list_protocols()],
                       headers=["suite", "setup", "file"]))
    return 0


def cmd_flops(args: argparse.Namespace) -> int:
    import copy

    from prunebench.flops import MACS_NOTE, forward_macs, param_count
    from prunebench.method import Target
    from prunebench.models import ARCHS
    from prunebench.pruning import PruningPlan, apply_plan

    arch = ARCHS.get(args.arch)
    model = arch.build(arch.num_classes, arch.input_shape[0])
    dense = forward_macs(model, arch.input_shape)
    single = args.config is not None or args.ratio is not None
    if single:  # (config, ratio) per row
        targets = [(args.config, args.ratio)]
    else:  # the dense model and every named config
        targets = [(None, None)] + [(c, None) for c in sorted(arch.configs)]
    rows = []
    for config, ratio in targets:
        pruned = model
        if config is not None or ratio is not None:
            pruned = copy.deepcopy(model)
            keep = Target(ratio=ratio, config=config).keep_counts(arch, pruned)
            apply_plan(pruned, PruningPlan.first_k(keep), arch.input_shape)
        macs = forward_macs(pruned, arch.input_shape)
        rows.append({"arch": arch.name, "config": config, "ratio": ratio, "input": list(arch.input_shape),
                     "macs": macs, "params": param_count(pruned), "dense_macs": dense, "speedup": dense / macs})
    if args.json:
        print(json.dumps(rows[0] if single else rows))
    else:
        print(tabulate([[r["arch"], r["config"] or (r["ratio"] if r["ratio"] is not None else "dense"),
                         f"{r['macs']:,}", f"{r['params']:,}", f"{r['speedup']:.2f}x"] for r in rows],
                       headers=["arch", "config", "MACs", "params", "speedup"]))
        print(f"\n{MACS_NOTE}; input {'x'.join(map(str, arch.input_shape))}, batch 1.")
    return 0


def _harness(args: argparse.Namespace):
    """The harness of `run` and `crossval`: plug-ins loaded, the protocol resolved, the ratio checked."""
    from prunebench.protocol_files import DEFAULT_SUITE, load_protocol
    from prunebench.runner import Harness

    plugins = _plugin_paths(args.plugins)
    if args.ratio is not None and not 0 <= args.ratio < 1:
        raise UserError(f"--ratio {args.ratio} is outside [0, 1): pass a fraction of filters to remove, e.g. 0.5.")
    speedup = getattr(args, "speedup", None)
    if speedup is not None and not (math.isfinite(speedup) and 1 < speedup <= 10_000):
        raise UserError(f"--speedup {speedup:g}: give dense MACs / pruned MACs above 1, e.g. --speedup 2.")
    if args.seeds and not all(0 <= s < 2**31 for s in args.seeds):
        raise UserError(f"--seeds {' '.join(map(str, args.seeds))}: seeds are integers from 0 to 2147483647.")
    protocol, path, sha = load_protocol(args.protocol, args.suite or DEFAULT_SUITE)
    if args.suite and protocol.suite != args.suite:
        raise UserError(f"{path} is a protocol of suite {protocol.suite!r}, not {args.suite!r}.")
    records.refuse(args.store or paths.default_store(), args.command)
    harness = Harness(protocol, store=args.store or paths.default_store(), protocol_sha256=sha,
                      data_root=args.data_root, device=args.device,
                      compiled=args.compile, plugins=plugins, executor=_executor(args),
                      division=args.division, sandbox=args.sandbox)
    return harness, path


def _plugin_paths(given: list[str]) -> tuple[str, ...]:
    """Plug-ins as the planning worker loads them: files by absolute path (they must exist),
    modules by name. Nothing is imported here."""
    out = []
    for p in given:
        if p.endswith(".py") or Path(p).exists():
            if not Path(p).is_file():
                raise UserError(f"plug-in file {p!r} does not exist: pass a .py file or an importable module name")
            out.append(str(Path(p).resolve()))
        else:
            out.append(p)
    return tuple(out)


def _executor(args: argparse.Namespace):
    """The executor `--executor` names, its options checked (None: sequential)."""
    from prunebench.executor import RayExecutor

    ray_only = [flag for flag, value in (("--ray-address", args.ray_address), ("--gpus-per-run", args.gpus_per_run))
                if value is not None]
    if args.executor == "sequential":
        if ray_only:
            raise UserError(f"{' and '.join(ray_only)} {'apply' if len(ray_only) > 1 else 'applies'} only with "
                            "--executor ray.")
        return None
    gpus = args.gpus_per_run
    if gpus is None:
        import torch

        gpus = 1.0 if torch.cuda.is_available() and args.device != "cpu" else 0.0
    if not 0 <= gpus <= 1 and gpus != int(gpus):
        raise UserError(f"--gpus-per-run {gpus}: give a fraction of one GPU (0 to 1) or a whole number.")
    if gpus < 0 or args.cpus_per_run <= 0:
        raise UserError("--gpus-per-run must be >= 0 and --cpus-per-run > 0.")
    return RayExecutor(address=args.ray_address, cpus_per_run=args.cpus_per_run, gpus_per_run=gpus)


def cmd_run(args: argparse.Namespace) -> int:
    harness, path = _harness(args)
    seeds = args.seeds or harness.suite.seeds
    if args.dry_run:
        return _dry_run(harness, args, seeds, path)
    rows = harness.run(args.method, seeds, args.ratio, args.config, speedup=args.speedup)
    if args.json:
        print(json.dumps(_rounded(rows), indent=1))
    else:
        _print_table(harness, rows, path)
    if harness.failures:
        lines = [f"  {f.row} seed {f.seed}" + (f" at {f.target}" if f.target else "") + f" (run {f.run_id[:12]}): "
                 f"{f.reason}" for f in harness.failures]
        print("\nFailed runs (in no table):\n" + "\n".join(lines), file=sys.stderr if args.json else sys.stdout)
        return 1
    return 0


def cmd_crossval(args: argparse.Namespace) -> int:
    from prunebench.crossval import crossval

    if len(args.method) != 2:
        raise UserError(f"crossval takes exactly two methods (--method A --method B), got {len(args.method)}.")
    harness, path = _harness(args)
    result = crossval(harness, args.method[0], args.method[1], args.seeds or harness.suite.seeds,
                      args.ratio, args.config, args.speedup)
    a, b = result.a, result.b
    if args.json:
        print(json.dumps({
            "a": a, "b": b, "recipes": {k: {"lr": str(r.lr), "epochs": r.epochs} for k, r in result.recipes.items()},
            "pairings": [{"method": p.method, "recipe_of": p.recipe_of, "mean": p.summary.mean, "std": p.summary.std,
                          "n": p.summary.n, "scores": p.scores, "runs": p.runs} for p in result.pairings.values()],
            "duels": [{"recipe_of": d.recipe_of, "leader": d.leader, "winner": d.winner, "delta": d.comparison.delta,
                       "ci": d.comparison.ci, "p": d.comparison.p, "p_holm": d.p_adjusted, "test": d.comparison.test}
                      for d in result.duels],
            "consistent": result.consistent, "interact": result.interact, "verdict": result.verdict()}, indent=1))
        return 0

    def cell(method: str, owner: str) -> str:
        s = result.pairings[(method, owner)].summary
        return f"{s.mean:.2f} ± {s.std:.2f} (n={s.n})" if s.std is not None else f"{s.mean:.2f} (n={s.n})"

    pr = harness.protocol
    print(f"\n{pr.suite} under {pr.setup} ({path}): recipe cross-validation (Wang et al. Sec. 5)")
    for owner, recipe in result.recipes.items():
        print(f"  recipe of {owner}: LR {recipe.lr}, {recipe.epochs} epochs")
    print()
    print(tabulate([[m, cell(m, a), cell(m, b)] for m in (a, b)],
                   headers=["test acc % (mean ± std)", f"recipe of {a}", f"recipe of {b}"]))
    print()
    for d in result.duels:
        c = d.comparison
        detail = (f"({c.reason})" if c.test is None
                  else f"(95% CI [{c.ci[0]:+.2f}, {c.ci[1]:+.2f}], {c.test})")  # type: ignore[index]
        print(f"under the recipe of {d.recipe_of}: {d.reading()}; {a} − {b} = {c.delta:+.2f} {detail}")
    print(f"\nverdict: {result.verdict()}")
    runs = " ".join(r[:8] for p in result.pairings.values() for r in p.runs.values())
    print(f"\nAccuracy: last epoch on the test set. Runs: {runs}. Store: {harness.store_root}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from prunebench.report import build, report_runs, to_json, write_report
    from prunebench.store import Store

    root = args.store or paths.default_store()
    if not paths.db_path(root).exists() and not records.is_records(root):
        raise UserError(f"no run store at {root} (no {paths.db_path(root).name}); pass --store DIR of a store "
                        "that `bench run` wrote, or of run records that `bench export` wrote.")
    store = Store(root)
    verdicts = None
    if args.verify:
        records.refuse(root, "report --verify")
        from prunebench.reverify import verify_runs

        ids = report_runs(store, args.suite, args.protocol)
        print(f"verifying {len(ids)} runs of the report ...", file=sys.stderr, flush=True)
        verdicts = verify_runs(root, ids, args.data_root, progress=_verify_progress)
        failed = [v for v in verdicts if not v.ok]
        for v in failed:
            print(f"  refused: {v.row} seed {v.seed} (run {v.run_id[:12]}): {'; '.join(v.problems)}", file=sys.stderr)
    written = write_report(store, args.out, args.suite, args.protocol, args.reference, args.verify, verdicts)
    if args.json:
        print(json.dumps(to_json(build(store, args.suite, args.protocol, args.reference, args.verify, verdicts)),
                         indent=1))
        return 0
    for path in written:
        print(path)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    counts = records.export(args.store or paths.default_store(), args.out, args.suite, args.runs or None)
    print(f"{counts['added']} runs recorded in {args.out}, {counts['already recorded']} were already there; "
          f"{counts['verified']} of them carry a `bench verify` verdict"
          + (f"; {counts['unfinished']} unfinished runs left out" if counts["unfinished"] else "") + ".")
    if counts["verified"] < counts["added"] + counts["already recorded"]:
        print("Runs without a verdict show – (not verified) in reports: run `bench verify --store STORE` and export "
              "again to add them.", file=sys.stderr)
    return 0


def _verify_progress(verdict, done: int, total: int) -> None:
    mark = "ok" if verdict.ok else "FAILED"
    print(f"[{done}/{total}] {verdict.row} seed {verdict.seed} (run {verdict.run_id[:12]}): {mark}", file=sys.stderr,
          flush=True)


def cmd_verify(args: argparse.Namespace) -> int:
    from prunebench.reverify import finished_runs, index_problems, resolve_ids, verify_runs

    root = args.store or paths.default_store()
    if not paths.runs_dir(root).is_dir():
        raise UserError(f"no run store at {root} (no runs/ folder); pass --store DIR of a store that `bench run` "
                        "wrote.")
    records.refuse(root, "verify")
    ids = resolve_ids(root, args.runs) if args.runs else finished_runs(root)
    if not ids:
        raise UserError(f"the store {root} has no finished run to verify.")
    verdicts = verify_runs(root, ids, args.data_root, args.device, progress=None if args.json else _verify_progress)
    stray = index_problems(root) if not args.runs else []
    if args.json:
        print(json.dumps([{**v.__dict__, "ok": v.ok} for v in verdicts] + [{"index": p} for p in stray], indent=1))
    else:
        rows = [[v.run_id[:12], v.row, v.seed, "ok" if v.ok else "FAILED",
                 "; ".join(v.problems + [f"({f})" for f in v.flags]) or "-"] for v in verdicts]
        print(tabulate(rows, headers=["run", "row", "seed", "verified", "problems (flags)"], maxcolwidths=[None, 30, None,
                                                                                                       None, 80]))
        for line in stray:
            print(f"index: {line}")
        failed = sum(not v.ok for v in verdicts)
        print(f"\n{len(verdicts) - failed} of {len(verdicts)} runs verified"
              + (f"; {failed} FAILED" if failed else "") + (f"; {len(stray)} index problems" if stray else "") + ".")
    return 0 if all(v.ok for v in verdicts) and not stray else 1


def _rounded(value, digits: int = 4):
    """JSON output without floating-point noise (1.7799999999999965 -> 1.78)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v, digits) for v in value]
    return value


def _dry_run(harness, args: argparse.Namespace, seeds: list[int], path: Path) -> int:
    from prunebench.flops import MACS_NOTE

    planned = harness.plan(args.method, seeds, args.ratio, args.config, speedup=args.speedup)
    n = harness.dataset.train_size
    out, first = [], {}  # computation -> the first run of it (which trains it)
    for p in planned:
        phases = [{"phase": ph, "epochs": r.epochs, "lr": str(r.lr), "samples": r.epochs * (r.samples_per_epoch or n),
                   "batch_size": r.batch_size} for ph, r in p.spec.phases]
        if p.spec.rounds is not None and p.spec.method is not None:  # each round's cumulative ratio
            ratios = iter(harness.schedule(p.spec.method, p.spec.rounds, p.found["knob"] if p.found else None))
            for i, ph in enumerate(x for x in phases if x["phase"] == "round"):
                ph["phase"], ph["ratio"] = f"round{i + 1}", round(next(ratios), 4)
        out.append({"run": p.spec.run_id[:12], "row": p.row, "seed": p.spec.seed,
                    "target": p.target.label() if p.target else None, "macs": p.macs,
                    "speedup": round(harness.dense_macs / p.macs, 4) if p.macs else None,
                    **({"search": {"ratio": p.found["knob"], "target_macs": round(p.found["target_macs"]),
                                   "within_1_percent": p.found["within"], "closest": p.found["closest"]}}
                       if p.found else {}),
                    "phases": phases, "budget": p.budget, "computation": p.computation[:12] if p.computation else None,
                    "trained_as": first.setdefault(p.computation, p.spec.run_id[:12]) if p.computation else None})
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    pr = harness.protocol
    print(f"protocol {pr.setup} of suite {pr.suite} ({path}); budget: "
          f"{pr.budget.kind + ' (' + pr.budget.convention + ')' if pr.budget else 'none'}")
    _print_rules(pr, harness.base_recipe.epochs)
    if harness.squeezes:
        print("SX-B with a P/F schedule: each pipeline prunes at epoch int(P / speedup); scratch trains P + F.")
    print()
    table = []
    for o in out:
        for ph in o["phases"]:
            found = o.get("search")
            target = o["target"] or "-"
            if found:  # the ratio the search found, and whether whole filters kept it off by more than 1%
                target += f" (ratio {found['ratio']:g}{'' if found['within_1_percent'] else ', nearest'})"
            trains = "yes" if o["trained_as"] in (None, o["run"]) else f"as {o['trained_as']}"
            phase = ph["phase"] + (f" (to {ph['ratio']:g})" if "ratio" in ph else "")
            table.append([o["run"], o["row"], o["seed"], target, phase, ph["epochs"],
                          ph["lr"], f"{ph['samples']:,}", f"{o['macs']:,}",
                          f"{o['budget']:.4g}" if o["budget"] is not None else "-", trains])
    print(tabulate(table, headers=["run", "row", "seed", "target", "phase", "epochs", "LR schedule",
                                   "samples (all epochs)", "MACs/image", "budget", "trains"]))
    print(f"\nMACs/image: {MACS_NOTE}, of one forward pass of one image. Budget: total epochs (SX-A) or "
          "training FLOPs (SX-B) of pretrain + prune + retrain that the scratch run must not exceed.\n"
          "Planned on an untrained model: exact for fixed layer-wise ratios and named configs; where a method "
          "chooses the architecture from trained weights or data (a global threshold, a pruning phase), the "
          "run decides it on the trained base, and its MACs, scratch epochs and budget follow from that.")
    if any(o["trained_as"] not in (None, o["run"]) for o in out):
        print("Trains 'as RUN': the same computation as that run (equal architecture, recipe and seed): trained once, "
              "the result in both rows. A run whose computation another setup already trained in the store is "
              "not trained again either.")
    if any(o.get("search") for o in out):
        print("Speedup targets: the ratio each method is asked for, found by search over its plans to within 1% of "
              "dense MACs / speedup; 'nearest': whole filters allow no closer architecture (the nearer of the two "
              "around the target). On the trained base (and after a pruning phase) the search runs again.")
    return 0


def _epochs(r: dict) -> str:
    """Total epochs of a row, split as base+phase+phase when it has a shared base (`14 (6+3+5)`)."""
    total, own = r["epochs"], r["epochs_own"]
    if not isinstance(total, int) or not isinstance(own, int):
        return str(total)  # seeds differ (automatic architectures): the list of totals
    phases = list((r.get("phase_epochs") or {}).values()) or [own]
    if total == own and len(phases) == 1:
        return str(total)
    return f"{total} ({'+'.join(str(n) for n in [total - own, *phases] if n or len(phases) == 1)})"


def _phases_note(rows: list[dict]) -> str:
    """Which phases the epochs column's parts are, e.g. 'base+prune+retrain'."""
    names = {tuple(r["phase_epochs"]) for r in rows if r.get("phase_epochs") and r["epochs"] != r["epochs_own"]}
    return ", ".join("base+" + "+".join(n) for n in sorted(names))


def _print_table(harness, rows: list[dict], path: Path) -> None:
    from prunebench.flops import MACS_NOTE

    masked = any(r.get("effective_macs", r["macs"]) != r["macs"] for r in rows)
    budgeted = any(r.get("budget_kind") for r in rows)
    kind = next((r["budget_kind"] for r in rows if r.get("budget_kind")), None)
    table = []
    for r in rows:
        used = "-"
        if r.get("budget_used") is not None and r.get("budget"):
            used = f"{r['budget_used']:.3g} ({r['budget_used'] / r['budget']:.1%})"
        table.append([
            r["row"], r["target"] or "-", f"{r['mean']:.2f}", f"± {r['std']:.2f}" if r["std"] is not None else "",
            r["n"],
            f"{r['drop']:+.2f}" if r["drop"] is not None else "-",
            f"{r['macs']:,}", *([f"{r['effective_macs']:,}"] if masked else []), f"{r['params']:,}",
            f"{r['speedup']:.2f}x", _epochs(r), *([used] if budgeted else []), " ".join(i[:8] for i in r["run_ids"]),
        ])
    pr = harness.protocol
    headers = ["", "target", "test acc %", "std", "n", "drop (pts)", "MACs/image",
               *(["effective MACs/image"] if masked else []), "params", "speedup", "epochs",
               *([f"{'epochs' if kind == 'epochs' else 'train FLOPs'} (of budget)"] if budgeted else []), "runs"]
    align = ["left", "left", "right", "left", "right", "right", "right", *(["right"] if masked else []), "right",
             "right", "left", *(["right"] if budgeted else []), "left"]
    division = "OPEN DIVISION: method code ran inside training; not comparable with closed-division results" \
        if harness.division == "open" else "closed division: method code ran only in the planning worker" + (
            " (sandboxed)" if harness.planner.sandboxed else " (NOT sandboxed: bubblewrap absent or --sandbox off)")
    print(f"\n{pr.suite} under {pr.setup} ({path}, content sha256 {harness.protocol_sha256[:12]}); {division}")
    print(tabulate(table, headers=headers, colalign=align, disable_numparse=True))
    if masked:
        print("\nUnstructured (masked) rows keep the dense shapes: MACs are dense hardware's; effective MACs "
              "weight each layer by its density, and their speedup is a sparse kernel's.")
    parts = _phases_note(rows)
    notes = [
        ("Target: a speedup (dense MACs / pruned MACs; effective MACs for masked rows), each method's ratio found by "
         "the harness's search to within 1% of it or the nearest architecture; or a pruning ratio each method "
         "applies in its own way (per layer, or globally), at which rows do not cost the same: read MACs and "
         "speedup beside accuracy."),
        "Accuracy: last epoch on the test set, mean ± sample std over the n seeds.",
        "Drop: accuracy points lost against the base model of the same seed (+1.50 = 1.5 points below it; "
        "negative: above it).",
        f"MACs/image: one forward pass of one image; {MACS_NOTE}. Speedup: the dense model's MACs / the "
        "row's. Params: parameters of the pruned model.",
        "Epochs: total trained, the shared base's included" + (f" ({parts})." if parts else "."),
    ]
    if budgeted:
        b = pr.budget
        unit = ("total epochs of base + pruning + retraining" if kind == "epochs" else
                "training FLOPs of base + pruning + retraining (samples x 3 x 2 x MACs)")
        notes.append(f"Budget ({pr.setup}): {unit} of each pipeline, which its scratch baseline must not exceed; "
                     f"the column shows what each row used and its share of the budget (tolerance {b.tolerance:g}).")
    print("\n" + "\n".join(notes) + f"\nStore: {harness.store_root}")


if __name__ == "__main__":
    sys.exit(main())
