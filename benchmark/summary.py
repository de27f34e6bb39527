"""A grid's results as leaderboard rows: one row per (method, target) with mean and spread over
seeds, the paired accuracy drop, costs and budgets; and the runs that failed. Pure functions of
the runs' metrics, in the same order whatever the executor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from prunebench import stats
from prunebench.method import Target

if TYPE_CHECKING:
    from prunebench.runner import Planned


@dataclass(frozen=True)
class Failure:
    """A run whose training went wrong (`TrainingFailed`): in no table, listed with its reason."""

    row: str
    seed: int
    target: str | None
    run_id: str
    reason: str



def failures(results: list[tuple[Planned, dict[str, Any] | None]], reason: Callable[[str], str | None]) -> list[Failure]:
    """The runs of `results` that failed (no metrics), with the reason `reason(run_id)` gives."""
    return [Failure(job.row, job.spec.seed, job.target.label() if job.target else None, job.spec.run_id,
                    reason(job.spec.run_id) or "failed") for job, metrics in results if metrics is None]


def summarise_grid(planned: list[Planned], results: list[tuple[Planned, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The rows of a grid's finished runs, in the grid's order (each row's runs by seed), so the
    result is the same whether the runs finished in order (sequential) or not (Ray)."""
    def row_key(job: Planned) -> str:
        return f"{job.row}|{job.target.label()}" if job.target else job.row

    position: dict[str, int] = {}
    for job in planned:
        position.setdefault(row_key(job), len(position))
    results = sorted(results, key=lambda r: (position.get(row_key(r[0]), len(position)), row_key(r[0]),
                                             r[0].spec.seed, r[0].spec.run_id))
    done: dict[str, list[tuple[str, dict]]] = {}  # row key -> [(run id, metrics)]
    targets: dict[str, Target | None] = {}
    for job, metrics in results:
        done.setdefault(row_key(job), []).append((job.spec.run_id, metrics))
        targets[row_key(job)] = job.target
    return summarise(done, targets)


def _mean_int(values: list[int]) -> int:
    return int(round(float(np.mean(values))))


def _mean_or_none(values: list) -> float | None:
    return None if not values or any(v is None for v in values) else float(np.mean(values))


def summarise(done: dict[str, list[tuple[str, dict]]],
              targets: dict[str, Target | None] | None = None) -> list[dict[str, Any]]:
    """One row per (method, target): mean and std of final test accuracy over seeds, with n, and
    the mean accuracy drop from the base model of the same seed (paired): the run's own base
    where it has one (a method's own base under S1), else the shared base of that seed. Under an
    SX budget, the budget and what the rows' pipelines used of it (means over seeds)."""
    dense = done.get("dense", [])
    base_acc = {m["seed"]: m["test_acc"] for _, m in dense}
    dense_macs = dense[0][1]["macs"] if dense else None
    rows = []
    for key, runs in done.items():
        name, _, target = key.partition("|")
        acc = stats.summarise([m["test_acc"] for _, m in runs])
        metrics = [m for _, m in runs]
        # an automatic architecture (slimming, global Taylor) may differ by seed: means over seeds
        macs = _mean_int([m["macs"] for m in metrics])
        effective = _mean_int([m.get("effective_macs", m["macs"]) for m in metrics])
        epochs = sorted({m["total_epochs"] for _, m in runs})
        own = sorted({m["epochs"] for _, m in runs})
        t = (targets or {}).get(key)
        budget = [m.get("budget") for m in metrics]
        kind = budget[0]["kind"] if budget[0] else None
        used = [m.get("total_epochs") if kind == "epochs" else m.get("total_train_flops") for m in metrics]
        phases = [tuple((m.get("phase_epochs") or {}).items()) for m in metrics]
        row: dict[str, Any] = {
            "row": name, "target": target or None, "n": len(runs),
            "ratio": t.ratio if t else None, "config": t.config if t else None,
            "speedup_target": t.speedup if t else None,  # a speedup target ('speedup' below: the achieved one)
            "mean": acc.mean, "std": acc.std,
            "drop": None, "macs": macs, "effective_macs": effective,
            "params": _mean_int([m["params"] for m in metrics]),
            "density": float(np.mean([m["density"] for m in metrics])) if metrics[0].get("density") else None,
            # from density-weighted MACs: for masked models a sparse kernel's, not dense hardware's
            "speedup": dense_macs / effective if dense_macs else None,
            "epochs": epochs[0] if len(epochs) == 1 else epochs,
            "epochs_own": own[0] if len(own) == 1 else own,
            # epochs of each phase the row trained itself, where every seed trained the same
            "phase_epochs": dict(phases[0]) if phases[0] and len(set(phases)) == 1 else None,
            "budget_kind": kind,
            "budget": _mean_or_none([b["amount"] for b in budget]) if kind else None,
            "budget_used": _mean_or_none(used) if kind else None,
            "division": metrics[0].get("division", "closed"),
            # whether every seed's planning ran sandboxed (None: nothing was planned, e.g. the dense row)
            "sandboxed": (None if not any(isinstance(m.get("planning"), dict) for m in metrics)
                          else all(bool((m.get("planning") or {}).get("sandboxed")) for m in metrics)),
            "run_ids": [rid for rid, _ in runs],
            "per_seed": [{"seed": m["seed"], "run_id": rid, "test_acc": m["test_acc"]} for rid, m in runs],
        }
        if name != "dense":
            row["drop"] = float(np.mean([
                (m["base_test_acc"] if m.get("base_test_acc") is not None else base_acc[m["seed"]]) - m["test_acc"]
                for _, m in runs]))
        rows.append(row)
    return rows
