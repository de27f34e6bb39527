"""Leaderboards from the SQLite index alone: tables (Markdown, one self-contained HTML page) and
plots (matplotlib PNG).

One table per (suite, protocol, pruning target). A cell is a row of that table (a method with its
settings, a scratch baseline, the dense model) over the seeds; only finished runs enter it. The
seeds a table expects are every seed that any run of its protocol was started with: a cell that
lacks one (never run, still running, violated or failed) is left out of the ranking and listed with
what is missing, instead of averaging fewer seeds.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tabulate import tabulate

from prunebench import stats
from prunebench.config import MethodSpec
from prunebench.errors import UserError
from prunebench.store import Store

DENSE = "dense"


@dataclass
class Cell:
    """One row of a table over its seeds."""

    row: str
    scores: dict[int, float]  # seed -> final test accuracy (last epoch)
    runs: dict[int, str]  # seed -> run id
    summary: stats.Summary | None
    drop: float | None = None  # mean over seeds of (the same seed's base accuracy - this accuracy)
    ta_train: float | None = None
    ta_test: float | None = None
    ta_epochs: int | None = None
    macs: int | None = None
    effective_macs: int | None = None
    params: int | None = None
    speedup: float | None = None
    missing: dict[int, str] = field(default_factory=dict)  # seed -> why it is missing
    superseded: list[str] = field(default_factory=list)  # an older run of the same seed and version, left out
    verified: str = "no"  # yes: every run verified by `bench verify` (files unchanged since); FAILED; no
    reference: str | None = None
    comparison: stats.Comparison | None = None
    p_adjusted: float | None = None
    verdict: str | None = None

    @property
    def complete(self) -> bool:
        return not self.missing


@dataclass
class Table:
    suite: str
    setup: str
    target: str
    seeds: list[int]
    dense: Cell | None
    cells: list[Cell]  # complete cells, ranked by mean accuracy
    incomplete: list[Cell]
    pairs: list[tuple[str, str, stats.Comparison, float | None]]  # all pairs, BH-adjusted p
    reference_note: str = ""  # how the reference row was chosen, where the default one is missing
    division: str = "closed"  # open: method code ran inside training; never mixed with closed rows
    unsandboxed: list[str] = field(default_factory=list)  # rows with a run whose planning was not sandboxed
    suite_sha256: str = ""  # the suite and protocol content every run of the table was audited against
    protocol_sha256: str = ""
    identity: str = ""  # "" for the shipped files' content, else e.g. "custom protocol S3.2 (sha256 1a2b...)"
    machines: list[str] = field(default_factory=list)  # where its runs ran, when more than one machine

    @property
    def name(self) -> str:
        return (f"{self.suite} {self.setup} {self.target}" + (f" ({self.identity})" if self.identity else "")
                + (" (open division)" if self.division == "open" else ""))

    @property
    def content_key(self) -> str:
        """'' for the shipped content, else 12 hex digits naming the (suite, protocol) content."""
        if not self.identity:
            return ""
        return hashlib.sha256(f"{self.suite_sha256}/{self.protocol_sha256}".encode()).hexdigest()[:12]

    @property
    def slug(self) -> str:
        return _slug(f"{self.suite}_{self.setup}_{self.target}" + (f"_{self.content_key}" if self.identity else "")
                     + ("_open" if self.division == "open" else ""))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def default_reference(setup: str, row: str, scratch_of: str | None = None) -> str | None:
    """The row a method is compared against: under SX-A / SX-B its own scratch baseline
    (Scratch-E / Scratch-B of the same method, Liu et al.'s comparison), else l1norm.
    `scratch_of`: the method's label as its scratch baseline names it (without retrain_lr)."""
    if row == DENSE or row.startswith("Scratch"):
        return None
    if setup in ("SX-A", "SX-B"):
        return f"{'Scratch-E' if setup == 'SX-A' else 'Scratch-B'} of {scratch_of or row}"
    return None if row == "l1norm" else "l1norm"


# --- reading the index -----------------------------------------------------------------------

def load_runs(store: Store, suite: str | None = None, protocol: str | None = None) -> pd.DataFrame:
    """Every indexed run (of `suite` / setup `protocol`, base models included) as a DataFrame."""
    rows = [dict(r) for r in store.query("SELECT * FROM runs")]
    df = pd.DataFrame(rows)
    if df.empty:
        raise UserError(f"the store {store.root} has no runs; run `bench run` first.")
    if suite is not None:
        if suite not in set(df["suite"]):
            raise UserError(f"the store {store.root} has no runs of suite {suite!r}; it has: "
                            f"{', '.join(sorted(set(df['suite'])))}.")
        df = df[df["suite"] == suite]
    if protocol is not None:
        setups = set(df["setup"].dropna())
        if protocol not in setups:
            raise UserError(f"the store {store.root} has no runs under {protocol!r}"
                            f"{' in suite ' + repr(suite) if suite else ''}; it has: {', '.join(sorted(setups))}.")
        df = df[(df["setup"] == protocol) | (df["kind"] == "base")]
    return df


def load_epochs(store: Store, run_ids: list[str]) -> pd.DataFrame:
    if not run_ids:
        return pd.DataFrame(columns=["run_id", "step", "phase", "epoch", "lr", "train_acc", "test_acc"])
    marks = ",".join("?" * len(run_ids))
    return pd.DataFrame([dict(r) for r in store.query(
        f"SELECT * FROM epochs WHERE run_id IN ({marks}) ORDER BY run_id, step", tuple(run_ids))])


def _mean_int(values: pd.Series) -> int | None:
    values = values.dropna()
    return int(round(float(values.mean()))) if len(values) else None


def _mean(values: pd.Series) -> float | None:
    values = values.dropna()
    return float(values.mean()) if len(values) else None


def _latest(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The runs of one version of a row, the latest of each seed: an older run of the same seed
    (e.g. trained again after its files were set aside) is superseded. Versions of a method's
    code are separate rows (`_versions`), never superseded by one another."""
    current = runs.sort_values("updated")
    done = current[current["status"] == "done"]
    keep = set(done.drop_duplicates("seed", keep="last")["id"]) | set(current[current["status"] != "done"]["id"])
    return current[current["id"].isin(keep)], sorted(set(runs["id"]) - keep)


def _cell(row: str, runs: pd.DataFrame, seeds: list[int], base_acc: dict[int, float],
          checks: Verifications | None = None) -> Cell:
    runs, superseded = _latest(runs)
    done = runs[runs["status"] == "done"].sort_values("seed")
    missing: dict[int, str] = {}
    checks = checks or Verifications()
    shown = dict(zip(done["id"], done["test_acc"]))
    marks = [checks.mark(i, shown[i]) for i in done["id"]]
    verified = "FAILED" if "FAILED" in marks else ("yes" if marks and all(m == "yes" for m in marks) else "no")
    if checks.strict:  # `bench report --verify`: a run that fails (or was not verified) is no result
        refused = {i: checks.why(i, shown[i]) for i in done["id"] if checks.mark(i, shown[i]) != "yes"}
        for _, r in done[done["id"].isin(refused)].iterrows():
            missing[int(r["seed"])] = f"refused by verification (run {r['id'][:12]}: {refused[r['id']]})"
        done = done[~done["id"].isin(refused)]
    for seed in seeds:
        if seed in set(done["seed"]) or seed in missing:
            continue
        others = runs[runs["seed"] == seed]
        if others.empty:
            missing[seed] = "not run"
        elif (others["status"] == "violated").any():
            missing[seed] = f"violated ({others[others['status'] == 'violated'].iloc[0]['violation']})"
        elif (others["status"] == "failed").any():
            missing[seed] = f"failed ({others[others['status'] == 'failed'].iloc[0]['failure']})"
        else:
            missing[seed] = f"incomplete (run {others.iloc[0]['id'][:12]} started, not finished)"
    scores = {int(s): float(a) for s, a in zip(done["seed"], done["test_acc"])}
    # the drop is paired by seed: the run's own base, else the same seed's dense model
    drops = [(a["base_test_acc"] if pd.notna(a["base_test_acc"]) else base_acc.get(int(a["seed"]), np.nan))
             - a["test_acc"] for _, a in done.iterrows()]
    return Cell(
        row=row, scores=scores, runs={int(s): i for s, i in zip(done["seed"], done["id"])},
        summary=stats.summarise(list(scores.values())) if scores else None,
        drop=float(np.mean(drops)) if drops and row != DENSE and not any(pd.isna(d) for d in drops) else None,
        ta_train=_mean(done["ta_train"]), ta_test=_mean(done["ta_test"]),
        ta_epochs=int(done["ta_epochs"].dropna().iloc[0]) if done["ta_epochs"].notna().any() else None,
        macs=_mean_int(done["macs"]), effective_macs=_mean_int(done["effective_macs"]),
        params=_mean_int(done["params"]), missing=missing, superseded=superseded, verified=verified)


def _scratch_of(runs: pd.DataFrame) -> str | None:
    """The label a pruned row's scratch baseline carries: its method without a retraining-recipe
    choice (scratch training ignores it)."""
    first = runs.iloc[0]
    if first["kind"] != "pruned" or pd.isna(first["method"]):
        return None
    return MethodSpec(name=first["method"], settings=json.loads(first["settings"] or "{}")).without_recipe.label


@dataclass
class Verifications:
    """The store's last `bench verify` of each run (`Store.verifications`); `strict`: rows of runs
    that did not pass are refused (`bench report --verify`)."""

    found: dict[str, dict] = field(default_factory=dict)
    strict: bool = False

    def mark(self, run_id: str, shown: float | None = None) -> str:
        """yes, FAILED or no; `shown`: the accuracy the table shows, which must be the verified one
        (an index edited after the verification is not verified)."""
        found = self.found.get(run_id)
        if found is not None and not found["ok"]:
            return "FAILED"
        return "no" if found is None or (shown is not None and found["recorded_acc"] != shown) else "yes"

    def why(self, run_id: str, shown: float | None = None) -> str:
        found = self.found.get(run_id)
        if found is not None and found["ok"] and shown is not None and found["recorded_acc"] != shown:
            return f"the index shows {shown}, not the verified {found['recorded_acc']}"
        return "not verified" if found is None else "; ".join(found["problems"]) or "passed"


def report_runs(store: Store, suite: str | None = None, protocol: str | None = None) -> list[str]:
    """The finished runs a report's tables are built from (base models included)."""
    df = load_runs(store, suite, protocol)
    return sorted(df[df["status"] == "done"]["id"])


def _latest_codes(runs: pd.DataFrame) -> dict[str, str]:
    """Each method's current code version: that of its most recently finished run (pruned and
    scratch rows of a method share it)."""
    done = runs[runs["status"] == "done"]
    source = (done if not done.empty else runs).dropna(subset=["method"])
    return {str(m): str(part.sort_values("updated")["method_code"].fillna("").iloc[-1])
            for m, part in source.groupby("method")}


def _versions(row: str, runs: pd.DataFrame, latest: dict[str, str]) -> list[tuple[str, str, pd.DataFrame]]:
    """A row's runs by version of the method's code (`method_code`), each its own row: the
    method's current version keeps the plain label, older ones read 'l1norm (older code
    1a2b3c4d)'. Returns (label, the suffix, runs)."""
    codes = runs["method_code"].fillna("")
    method = runs["method"].dropna()
    current = latest.get(str(method.iloc[0])) if not method.empty else None
    out = []
    for code in sorted(set(codes)):
        suffix = "" if current is None or code == current else f" (older code {code[:8] or 'unrecorded'})"
        out.append((row + suffix, suffix, runs[codes == code]))
    return out


def shipped_content() -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """sha256 of the content of every suite and protocol file in the protocols folders (the
    shipped ones and $PRUNEBENCH_PROTOCOLS): what a table's own content is checked against."""
    from prunebench.config import Protocol, content_sha256
    from prunebench.protocol_files import list_protocols, load_suites, read_model

    try:
        suites = load_suites()
        found = {name: content_sha256(suites.get(name)) for name in suites}
        protocols = {}
        for suite_name, setup, path in list_protocols():
            try:
                protocols[(suite_name, setup)] = content_sha256(read_model(path, Protocol))
            except UserError:
                continue
    except UserError:
        return {}, {}
    return found, protocols


def identity(suite: str, setup: str, suite_sha: str, protocol_sha: str,
             shipped: tuple[dict[str, str], dict[tuple[str, str], str]]) -> str:
    """How a table's protocol differs from the file of its name: '' when it is that file's content."""
    if not protocol_sha or not suite_sha:
        return "protocol content not recorded (runs of an older prunebench)"
    parts = []
    if shipped[0].get(suite) != suite_sha:
        parts.append(f"custom suite {suite} (sha256 {suite_sha[:12]})")
    if shipped[1].get((suite, setup)) != protocol_sha:
        parts.append(f"custom protocol {setup} (sha256 {protocol_sha[:12]})")
    return ", ".join(parts)


def build(store: Store, suite: str | None = None, protocol: str | None = None,
          reference: str | None = None, verified_only: bool = False, verdicts: list | None = None) -> list[Table]:
    """The tables of every (suite content, protocol content, target) in the store, statistics
    included. A file with a shipped name but other content gets its own table."""
    df = load_runs(store, suite, protocol)
    tables = []
    for column, default in (("division", "closed"), ("suite_sha256", ""), ("protocol_sha256", ""), ("machine", "")):
        df = df.assign(**{column: df[column].fillna(default) if column in df else default})
    runs = df[df["kind"] != "base"]
    bases = df[df["kind"] == "base"]
    shipped = shipped_content()
    found = store.verifications()
    found.update({v.run_id: {"ok": v.ok, "problems": v.problems, "recorded_acc": v.recorded_acc}
                  for v in verdicts or ()})  # just verified (a read-only store keeps no record of it)
    checks = Verifications(found, strict=verified_only)
    keys = ["suite", "setup", "division", "suite_sha256", "protocol_sha256"]
    for (suite_name, setup, division, suite_sha, protocol_sha), group in sorted(runs.groupby(keys),
                                                                                key=lambda kv: kv[0]):
        # the dense cell: the base models this protocol's pipelines start from (the longest per seed)
        used = bases[bases["id"].isin(set(group["base"].dropna())) & (bases["status"] == "done")]
        used = used.sort_values("epochs")
        used = used.drop_duplicates("seed", keep="last")
        seeds = sorted(set(group["seed"]) | set(used["seed"]))
        dense = _cell(DENSE, used, seeds, {}, checks) if not used.empty else None
        if dense:
            dense.speedup = 1.0
        base_acc = dense.scores if dense else {}
        dense_macs = dense.macs if dense else None
        for target, at in sorted(group.groupby("target"), key=lambda kv: kv[0]):
            cells, scratch_of = [], {}
            latest = _latest_codes(at)
            for row, part in at.groupby("row"):
                for label, suffix, version in _versions(str(row), part, latest):
                    cells.append(_cell(label, version, seeds, base_acc, checks))
                    own = _scratch_of(version)  # its scratch baseline: of the same code version
                    scratch_of[label] = own + suffix if own is not None else None
            for c in cells:
                c.speedup = dense_macs / c.effective_macs if dense_macs and c.effective_macs else None
            complete = sorted([c for c in cells if c.complete], key=lambda c: -c.summary.mean)  # type: ignore[union-attr]
            incomplete = [c for c in cells if not c.complete]
            note = _test_against_reference(complete, setup, reference, scratch_of)
            unsandboxed = sorted({str(r) for r, sb in zip(at["row"], at.get("sandboxed", [])) if sb == 0})
            done = pd.concat([at[at["status"] == "done"], used])
            machines = sorted({m or "not recorded" for m in done["machine"]})
            tables.append(Table(suite_name, setup, str(target), seeds, dense, complete, incomplete,
                                _all_pairs(complete), note, str(division), unsandboxed, suite_sha, protocol_sha,
                                identity(suite_name, setup, suite_sha, protocol_sha, shipped),
                                machines if len(machines) > 1 else []))
    if reference is not None and not any(c.row == reference for t in tables for c in t.cells):
        rows = sorted({c.row for t in tables for c in t.cells})
        raise UserError(f"--reference {reference!r} is not a row of any leaderboard here; rows: {', '.join(rows)}.")
    return tables


def _stand_in(cells: list[Cell], wanted: str) -> str | None:
    """A reference that exists in a table without the `wanted` row: the best-ranked row of the
    same method with other settings (`l1norm(retrain_lr=0.01)`; its own recipe before a borrowed
    one), else the best-ranked method row."""
    rows = [c.row for c in cells if c.row != DENSE and not c.row.startswith("Scratch")]  # cells are ranked
    same = [r for r in rows if re.split(r"[( ]", r, maxsplit=1)[0] == wanted]
    own = [r for r in same if " with the recipe of " not in r]  # not a cross-validation's borrowed recipe
    return (own or same or rows or [None])[0]


def _test_against_reference(cells: list[Cell], setup: str, reference: str | None,
                            scratch_of: dict[str, str | None]) -> str:
    """Each cell against its reference (paired through the shared base when the seeds agree);
    Holm across the cells of the table. Returns a note where the default reference (l1norm,
    outside SX) is not in the table and another row stands in for it."""
    by_row = {c.row: c for c in cells}
    tested = []
    note, stand_in = "", None
    if reference is None and setup not in ("SX-A", "SX-B") and "l1norm" not in by_row:
        stand_in = _stand_in(cells, "l1norm")
        if stand_in is not None:
            note = (f"This table has no plain l1norm row, the default reference: rows are tested against "
                    f"{stand_in!r} instead. Add one with `bench run --protocol {setup} --method l1norm` (same "
                    "seeds and target), or choose with `bench report --reference ROW`.")
    for c in cells:
        ref = reference if reference is not None else default_reference(setup, c.row, scratch_of.get(c.row))
        if ref == "l1norm" and stand_in is not None:
            ref = stand_in
        if ref is None or ref == c.row:
            continue
        c.reference = ref
        if ref not in by_row:
            c.verdict = "no reference"
            continue
        c.comparison = stats.compare(c.scores, by_row[ref].scores)
        tested.append(c)
    adjusted = stats.holm([c.comparison.p for c in tested])  # type: ignore[union-attr]
    for c, p in zip(tested, adjusted):
        c.p_adjusted = p
        c.verdict = stats.verdict(c.comparison, p)  # type: ignore[arg-type]
    return note


def _all_pairs(cells: list[Cell]) -> list[tuple[str, str, stats.Comparison, float | None]]:
    pairs = [(a.row, b.row, stats.compare(a.scores, b.scores)) for i, a in enumerate(cells) for b in cells[i + 1:]]
    adjusted = stats.benjamini_hochberg([c.p for _, _, c in pairs])
    return [(a, b, c, p) for (a, b, c), p in zip(pairs, adjusted)]


# --- text ----------------------------------------------------------------------------------

def _f(x: float | None, digits: int = 2, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _p(p: float | None) -> str:
    if p is None:
        return "-"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


HEADERS = ["rank", "", "test acc % (mean ± std)", "95% CI", "n", "drop", "vs", "Δ [95% CI]", "p (Holm)",
           "P(A>B)", "verdict", "TA train", "TA test", "MACs", "eff. MACs", "params", "speedup", "verified", "runs"]
VERIFIED = {"yes": "✓", "FAILED": "✗ FAILED", "no": "–"}


def _row(rank: str, c: Cell) -> list[str]:
    s = c.summary
    comp = c.comparison
    return [
        rank, c.row,
        f"{s.mean:.2f} ± {s.std:.2f}" if s and s.std is not None else (f"{s.mean:.2f}" if s else "-"),
        f"[{s.ci[0]:.2f}, {s.ci[1]:.2f}]" if s and s.ci else "-", str(s.n if s else 0),
        _f(c.drop, sign=True), c.reference or "-",
        (f"{comp.delta:+.2f} [{comp.ci[0]:+.2f}, {comp.ci[1]:+.2f}]" if comp and comp.ci
         else (f"{comp.delta:+.2f}" if comp else "-")),
        _p(c.p_adjusted), f"{comp.prob_a_better:.2f}" if comp else "-", c.verdict or "-",
        _f(c.ta_train), _f(c.ta_test),
        f"{c.macs:,}" if c.macs is not None else "-",
        f"{c.effective_macs:,}" if c.effective_macs is not None else "-",
        f"{c.params:,}" if c.params is not None else "-",
        f"{c.speedup:.2f}x" if c.speedup else "-",
        VERIFIED[c.verified],
        " ".join(c.runs[s][:8] for s in sorted(c.runs)),
    ]


def table_rows(t: Table) -> list[list[str]]:
    rows = [_row("-", t.dense)] if t.dense and t.dense.complete else []
    return rows + [_row(str(i + 1), c) for i, c in enumerate(t.cells)]


def missing_rows(t: Table) -> list[list[str]]:
    cells = t.incomplete + ([t.dense] if t.dense and not t.dense.complete else [])
    return [[c.row, f"{len(c.scores)} of {len(t.seeds)}",
             "; ".join(f"seed {s}: {why}" for s, why in sorted(c.missing.items())),
             " ".join(c.runs[s][:8] for s in sorted(c.runs)) or "-"] for c in cells]


def superseded_line(t: Table) -> str:
    cells = t.cells + t.incomplete
    old = [f"{c.row}: {' '.join(r[:8] for r in c.superseded)}" for c in cells if c.superseded]
    return ("Superseded runs, left out (an older version of the method's code, or an earlier run of the same "
            "seed): " + "; ".join(old) + ".") if old else ""


def pair_rows(t: Table) -> list[list[str]]:
    return [[a, b, f"{c.delta:+.2f}", f"[{c.ci[0]:+.2f}, {c.ci[1]:+.2f}]" if c.ci else "-", c.test or c.reason,
             _p(p), stats.verdict(c, p)] for a, b, c, p in t.pairs]


NOTES = (
    "Accuracy: the last epoch's, on the test set (never the best epoch). Mean ± sample std over seeds; "
    "95% CI: t-interval of the mean. Drop: base accuracy of the same seed minus the run's. "
    "Δ: against the row in 'vs' (its scratch baseline under SX-A/SX-B, l1norm otherwise, or --reference), "
    "paired by seed through the shared base model (Welch's t-test when the seed sets differ); p adjusted by "
    "Holm across the table; a difference is called only when the adjusted p < 0.05, else 'n.s.'; with fewer "
    "than 3 seeds no test is run. P(A>B): share of seeds where the row beats its reference (ties half). "
    "TA: trainability accuracy (Wang et al. Eq. 1), mean train / test accuracy over the first LR stage of the "
    "final phase. MACs: forward multiply-accumulates of one image (torch.utils.flop_counter); effective MACs "
    "weight each layer by its non-zero fraction (masked models); speedup from effective MACs. Verified: ✓ when "
    "`bench verify` re-derived every run of the row (model file, architecture, target, MACs, test accuracy, trace "
    "re-audit, index) and its record is unchanged since; ✗ when one failed; – when not verified (`bench report "
    "--verify` verifies first and refuses rows that fail). Runs: the ids (8 characters) behind each row, by seed."
)


def division_heading(t: Table) -> str:
    return (f" — {t.identity}" if t.identity else "") + (" — OPEN DIVISION" if t.division == "open" else "")


def division_note(t: Table) -> str:
    """What a reader must know about the table's protocol, where its runs ran and how their method
    code ran."""
    notes = []
    if t.identity.startswith("custom"):
        notes.append(f"Its runs were audited against a {t.identity.replace('custom', 'protocol file', 1)} whose "
                     "content is not the file of that name in the protocols folders: they are never ranked with "
                     "the runs of that file.")
    if t.machines:
        notes.append(f"Its runs come from {len(t.machines)} machines ({'; '.join(t.machines)}): floating-point "
                     "kernels differ between CPUs and GPUs, so equal runs can differ slightly between them.")
    if t.division == "open":
        notes.append("Open division: method code ran inside the training process (`--division open`); these rows "
                     "are not comparable with the closed division's and are ranked only against each other.")
    if t.unsandboxed:
        notes.append(f"Planning not sandboxed for: {', '.join(t.unsandboxed)} (bubblewrap absent or --sandbox off).")
    return " ".join(notes)


def markdown(t: Table, images: list[str]) -> str:
    out = [f"## {t.suite} under {t.setup}, target {t.target}{division_heading(t)}", "",
           *([division_note(t), ""] if division_note(t) else []),
           f"Seeds expected: {', '.join(map(str, t.seeds))}.", "",
           tabulate(table_rows(t), headers=HEADERS, tablefmt="github", disable_numparse=True), ""]
    if missing := missing_rows(t):
        out += ["**Not in the leaderboard** (a seed is missing; nothing is averaged over fewer seeds):", "",
                tabulate(missing, headers=["row", "seeds done", "missing", "runs done"], tablefmt="github"), ""]
    if t.reference_note:
        out += [t.reference_note, ""]
    if superseded := superseded_line(t):
        out += [superseded, ""]
    if t.pairs:
        out += ["All pairs (p adjusted by Benjamini–Hochberg across the pairs of this table):", "",
                tabulate(pair_rows(t), headers=["A", "B", "Δ (A − B)", "95% CI", "test", "p (BH)", "verdict"],
                         tablefmt="github", disable_numparse=True), ""]
    out += [f"![{name}]({name})" for name in images]
    return "\n".join(out) + "\n"


def _table_html(rows: list[list[str]], headers: list[str], cls: str) -> str:
    return tabulate(rows, headers=headers, tablefmt="html", disable_numparse=True).replace(
        "<table>", f'<table class="{cls}">', 1)


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
td:nth-child(2), th:nth-child(2) { text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
.note { font-size: 0.85em; color: #555; max-width: 70em; }
"""


def html_page(tables: list[Table], images: dict[str, list[Path]]) -> str:
    """One self-contained page: styles inline, plots embedded as data URIs (no network needed)."""
    body = ["<h1>prunebench leaderboard</h1>", f'<p class="note">{html.escape(NOTES)}</p>']
    for t in tables:
        heading = f"{t.suite} under {t.setup}, target {t.target}{division_heading(t)}"
        body.append(f'<h2 id="{t.slug}">{html.escape(heading)}</h2>')
        if note := division_note(t):
            body.append(f'<p class="note"><b>{html.escape(note)}</b></p>')
        body.append(f"<p>Seeds expected: {', '.join(map(str, t.seeds))}.</p>")
        body.append(_table_html(table_rows(t), HEADERS, "leaderboard"))
        if missing := missing_rows(t):
            body.append("<p><b>Not in the leaderboard</b> (a seed is missing):</p>")
            body.append(_table_html(missing, ["row", "seeds done", "missing", "runs done"], "missing"))
        if t.reference_note:
            body.append(f"<p>{html.escape(t.reference_note)}</p>")
        if superseded := superseded_line(t):
            body.append(f"<p>{html.escape(superseded)}</p>")
        if t.pairs:
            body.append("<p>All pairs (p adjusted by Benjamini–Hochberg):</p>")
            body.append(_table_html(pair_rows(t), ["A", "B", "Δ (A − B)", "95% CI", "test", "p (BH)", "verdict"], "pairs"))
        for path in images.get(t.slug, []):
            data = base64.b64encode(path.read_bytes()).decode()
            body.append(f'<img class="plot" alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">')
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>prunebench leaderboard</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


# --- plots ---------------------------------------------------------------------------------

def _ratio(target: str) -> float | None:
    try:
        return float(target)
    except ValueError:
        return None


def plot_accuracy_vs_ratio(tables: list[Table], path: Path) -> Path | None:
    """Mean final accuracy against pruning ratio per row, with its 95% CI as a band."""
    points: dict[str, list[tuple[float, stats.Summary]]] = {}
    dense = None
    for t in tables:
        ratio = _ratio(t.target)
        if ratio is None:
            continue
        dense = dense or t.dense
        for c in t.cells:
            points.setdefault(c.row, []).append((ratio, c.summary))  # type: ignore[arg-type]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row, pts in sorted(points.items()):
        pts.sort(key=lambda p: p[0])
        x = [p[0] for p in pts]
        y = [p[1].mean for p in pts]
        line, = ax.plot(x, y, marker="o", label=row)
        if all(p[1].ci for p in pts):
            ax.fill_between(x, [p[1].ci[0] for p in pts], [p[1].ci[1] for p in pts],  # type: ignore[index]
                            color=line.get_color(), alpha=0.15)
    if dense and dense.summary:
        ax.axhline(dense.summary.mean, color="k", linestyle="--", linewidth=1, label="dense")
    ax.set_xlabel("pruning ratio")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title(f"{tables[0].suite} under {tables[0].setup}: accuracy vs ratio (95% CI bands)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_learning_curves(store: Store, t: Table, path: Path) -> Path | None:
    """Train and test accuracy per epoch of each row's final phase (retraining, or a scratch
    run's training), mean over seeds, with the LR on a second axis."""
    cells = [c for c in t.cells if c.runs]
    epochs = load_epochs(store, [r for c in cells for r in c.runs.values()])
    if epochs.empty:
        return None
    cols = min(3, len(cells))
    rows = math.ceil(len(cells) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(6.5, 4.2 * cols), 3.2 * rows), squeeze=False)
    for ax, c in zip(axes.flat, cells):
        runs = epochs[epochs["run_id"].isin(set(c.runs.values()))]
        last = runs.groupby("run_id")["phase"].last().iloc[0]
        final = runs[runs["phase"] == last].groupby("epoch")[["train_acc", "test_acc", "lr"]].mean()
        x = final.index + 1
        ax.plot(x, final["train_acc"], label="train acc")
        ax.plot(x, final["test_acc"], label="test acc")
        ax.set_title(f"{c.row} ({last})", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        lr_ax = ax.twinx()
        lr_ax.step(x, final["lr"], where="mid", color="gray", linestyle=":", label="LR")
        lr_ax.set_ylabel("LR", color="gray")
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(cells):]:
        ax.axis("off")
    fig.suptitle(f"{t.name}: learning curves (mean over seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_ta_vs_final(tables: list[Table], path: Path) -> Path | None:
    """Trainability accuracy (train version) against final accuracy, one point per cell."""
    pts = [(c.ta_train, c.summary.mean, f"{c.row} @ {t.target}") for t in tables for c in t.cells
           if c.ta_train is not None and c.summary]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.scatter([p[0] for p in pts], [p[1] for p in pts])
    for x, y, label in pts:
        ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("trainability accuracy, train (%)")
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title(f"{tables[0].suite} under {tables[0].setup}: TA vs final accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- the report ----------------------------------------------------------------------------

def write_report(store: Store, out: Path, suite: str | None = None, protocol: str | None = None,
                 reference: str | None = None, verified_only: bool = False,
                 verdicts: list | None = None) -> list[Path]:
    """Write the Markdown leaderboards (one per suite and protocol), plots and `index.html`
    into `out`; return the files written."""
    tables = build(store, suite, protocol, reference, verified_only, verdicts)
    if not tables:
        raise UserError(f"the store {store.root} has no pruned or scratch runs"
                        f"{' of suite ' + repr(suite) if suite else ''}{' under ' + protocol if protocol else ''}; "
                        "run `bench run` first.")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the report.")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    images: dict[str, list[Path]] = {}
    groups: dict[tuple[str, str, str], list[Table]] = {}
    for t in tables:  # one page per suite and protocol content
        groups.setdefault((t.suite, t.setup, t.content_key), []).append(t)
    for (suite_name, setup, custom), group in groups.items():
        slug = _slug(f"{suite_name}_{setup}" + (f"_{custom}" if custom else ""))
        shared = [p for p in (plot_accuracy_vs_ratio(group, out / f"{slug}_accuracy_vs_ratio.png"),
                              plot_ta_vs_final(group, out / f"{slug}_ta_vs_final.png")) if p]
        heading = f" ({group[0].identity})" if group[0].identity else ""
        parts = [f"# Leaderboard: {suite_name} under {setup}{heading}", "", NOTES, ""]
        for t in group:
            curves = plot_learning_curves(store, t, out / f"{t.slug}_curves.png")
            images[t.slug] = [curves] if curves else []
            parts.append(markdown(t, [p.name for p in images[t.slug]]))
        images[group[-1].slug] = images[group[-1].slug] + shared
        parts += [f"![{p.name}]({p.name})" for p in shared]
        md = out / f"{slug}.md"
        md.write_text("\n".join(parts) + "\n")
        written += [md, *shared, *(p for t in group for p in images[t.slug] if p not in shared)]
    page = out / "index.html"
    page.write_text(html_page(tables, images))
    written.append(page)
    (out / "leaderboard.json").write_text(json.dumps(to_json(tables), indent=1))
    written.append(out / "leaderboard.json")
    return written


def to_json(tables: list[Table]) -> list[dict]:
    """The tables as plain data (for `bench report --json` and scripts)."""
    def cell(c: Cell) -> dict:
        s, comp = c.summary, c.comparison
        return {"row": c.row, "n": s.n if s else 0, "mean": s.mean if s else None, "std": s.std if s else None,
                "ci": list(s.ci) if s and s.ci else None, "drop": c.drop, "ta_train": c.ta_train,
                "ta_test": c.ta_test, "ta_epochs": c.ta_epochs, "macs": c.macs, "effective_macs": c.effective_macs,
                "params": c.params, "speedup": c.speedup, "reference": c.reference, "verified": c.verified,
                "delta": comp.delta if comp else None, "delta_ci": list(comp.ci) if comp and comp.ci else None,
                "test": comp.test if comp else None, "p": comp.p if comp else None, "p_holm": c.p_adjusted,
                "prob_better": comp.prob_a_better if comp else None, "verdict": c.verdict,
                "scores": {str(k): v for k, v in c.scores.items()}, "runs": {str(k): v for k, v in c.runs.items()},
                "missing": {str(k): v for k, v in c.missing.items()}}
    return [{"suite": t.suite, "setup": t.setup, "target": t.target, "division": t.division,
             "suite_sha256": t.suite_sha256 or None, "protocol_sha256": t.protocol_sha256 or None,
             "protocol": t.identity or "as shipped", "machines": t.machines,
             "unsandboxed": t.unsandboxed, "seeds": t.seeds,
             "dense": cell(t.dense) if t.dense else None, "cells": [cell(c) for c in t.cells],
             "incomplete": [cell(c) for c in t.incomplete], "reference_note": t.reference_note or None}
            for t in tables]
