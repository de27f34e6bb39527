"""Leaderboards from the SQLite index alone: tables (Markdown, one self-contained HTML page) and
figures (matplotlib, PNG and SVG).

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
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter, FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullLocator
from scipy import stats as sps
from tabulate import tabulate

from prunebench import paths, records, stats
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
    ta_scores: dict[int, float] = field(default_factory=dict)  # seed -> trainability accuracy, train version
    ta_train: float | None = None
    ta_test: float | None = None
    ta_epochs: int | None = None
    macs: int | None = None
    effective_macs: int | None = None
    params: int | None = None
    speedup: float | None = None
    achieved: dict[int, int] = field(default_factory=dict)  # seed -> effective MACs of its run
    knob: dict[int, float] = field(default_factory=dict)  # seed -> ratio the search found (speedup targets)
    total_epochs: dict[int, int] = field(default_factory=dict)  # seed -> the whole pipeline's epochs
    total_train_flops: dict[int, int] = field(default_factory=dict)  # seed -> the whole pipeline's training FLOPs
    budget_kind: str | None = None  # SX-A: epochs, SX-B: flops; None outside SX
    budget: dict[int, float] = field(default_factory=dict)  # seed -> the SX budget its pipeline was held to
    missing: dict[int, str] = field(default_factory=dict)  # seed -> why it is missing
    superseded: list[str] = field(default_factory=list)  # an older run of the same seed and version, left out
    superseded_results: dict[str, dict[str, Any]] = field(default_factory=dict)  # superseded run -> seed, test_acc
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
    shared: list[str] = field(default_factory=list)  # rows whose runs took another run's training (one computation)
    disagree: list[str] = field(default_factory=list)  # rows with a run whose computation holds another result too
    data_copy: str | None = None  # the data fingerprint of its runs, where the protocol's runs trained on several copies
    method_cpu: dict[str, float] = field(default_factory=dict)  # ranked row -> mean CPU seconds its method's code spent

    @property
    def heading(self) -> str:
        """What sets the table apart from the shipped files' runs: its `identity`, and its copy of
        the data where the protocol's runs trained on several."""
        copy = "" if self.data_copy is None else f"data copy {self.data_copy[:12] or 'not recorded'}"
        return ", ".join(part for part in (self.identity, copy) if part)

    @property
    def name(self) -> str:
        return (f"{self.suite} {self.setup} {self.target}" + (f" ({self.heading})" if self.heading else "")
                + (" (open division)" if self.division == "open" else ""))

    @property
    def content_key(self) -> str:
        """'' for the shipped content on one copy of the data, else 12 hex digits naming the (suite,
        protocol) content and the copy."""
        if not self.heading:
            return ""
        copy = "" if self.data_copy is None else f"/{self.data_copy}"
        return hashlib.sha256(f"{self.suite_sha256}/{self.protocol_sha256}{copy}".encode()).hexdigest()[:12]

    @property
    def slug(self) -> str:
        return _slug(f"{self.suite}_{self.setup}_{self.target}" + (f"_{self.content_key}" if self.heading else "")
                     + ("_open" if self.division == "open" else ""))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def parse_target(target: str) -> tuple[str, float | str]:
    """A table's target as (kind, value): ('ratio', 0.5), ('speedup', 2.0) from '2x', or
    ('config', 'A') from 'config A' (`config.target_label` writes them)."""
    if target.startswith("config "):
        return "config", target[len("config "):]
    if target.endswith("x"):
        try:
            return "speedup", float(target[:-1])
        except ValueError:
            pass
    try:
        return "ratio", float(target)
    except ValueError:
        return "config", target


TARGET_KINDS = ("ratio", "speedup", "config")


def target_order(target: str) -> tuple:
    """Sort key of targets: ratios ascending, then speedups ascending, then named configs."""
    kind, value = parse_target(target)
    return (TARGET_KINDS.index(kind), value if kind != "config" else 0.0, str(value))


def target_label(target: str) -> str:
    """'ratio 0.5', '2x speedup', 'config A'."""
    kind, value = parse_target(target)
    return {"ratio": f"ratio {target}", "speedup": f"{target} speedup"}.get(kind, f"config {value}")


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
    return round(float(values.mean())) if len(values) else None


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
    everything = runs
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

    def by_seed(column: str, kind: type = float) -> dict:
        if column not in done:
            return {}
        return {int(s): kind(v) for s, v in zip(done["seed"], done[column]) if pd.notna(v)}

    kinds = done["budget_kind"].dropna() if "budget_kind" in done else pd.Series(dtype=object)
    # the drop is paired by seed: the run's own base, else the same seed's dense model
    drops = [(a["base_test_acc"] if pd.notna(a["base_test_acc"]) else base_acc.get(int(a["seed"]), np.nan))
             - a["test_acc"] for _, a in done.iterrows()]
    return Cell(
        row=row, scores=scores, runs={int(s): i for s, i in zip(done["seed"], done["id"])},
        summary=stats.summarise(list(scores.values())) if scores else None,
        drop=float(np.mean(drops)) if drops and row != DENSE and not any(pd.isna(d) for d in drops) else None,
        ta_scores=by_seed("ta_train"), ta_train=_mean(done["ta_train"]), ta_test=_mean(done["ta_test"]),
        ta_epochs=int(done["ta_epochs"].dropna().iloc[0]) if done["ta_epochs"].notna().any() else None,
        macs=_mean_int(done["macs"]), effective_macs=_mean_int(done["effective_macs"]),
        params=_mean_int(done["params"]), achieved=by_seed("effective_macs", int), knob=by_seed("knob"),
        total_epochs=by_seed("total_epochs", int), total_train_flops=by_seed("total_train_flops", int),
        budget_kind=str(kinds.iloc[0]) if len(kinds) else None, budget=by_seed("budget"),
        missing=missing, superseded=superseded, verified=verified,
        superseded_results={i: {"seed": int(r["seed"]), "test_acc": float(r["test_acc"])}
                            for i, r in everything.set_index("id").loc[superseded].iterrows()})


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
    for column, default in (("division", "closed"), ("suite_sha256", ""), ("protocol_sha256", ""), ("machine", ""),
                            ("data_fingerprint", "")):
        df = df.assign(**{column: df[column].fillna(default) if column in df else default})
    runs = df[df["kind"] != "base"]
    bases = df[df["kind"] == "base"]
    shipped = shipped_content()
    found = store.verifications()
    found.update({v.run_id: {"ok": v.ok, "problems": v.problems, "recorded_acc": v.recorded_acc}
                  for v in verdicts or ()})  # just verified (a read-only store keeps no record of it)
    checks = Verifications(found, strict=verified_only)
    owners = {r["id"]: (r["row"], r["setup"]) for r in store.query("SELECT id, row, setup FROM runs")}
    everything = load_runs(store)  # one computation's runs may sit under setups or suites not shown
    results = _results(store.root, everything)
    upstream = _upstream(store.root, [str(i) for i in everything[everything["status"] == "done"]["id"]])
    keys = ["suite", "setup", "division", "suite_sha256", "protocol_sha256", "data_fingerprint"]
    # the copies of the data each (suite, protocol) content's finished runs trained on: more than
    # one, and each copy's runs are a table of their own, named by it (never ranked with another
    # copy's); a run not finished (no fingerprint recorded yet) is shown with its protocol's most
    # common copy
    done_runs = runs[runs["status"] == "done"]
    copies = done_runs.groupby(keys[:-1])["data_fingerprint"].nunique()
    common = done_runs.groupby(keys[:-1])["data_fingerprint"].agg(lambda f: f.value_counts().index[0])
    unfinished = (runs["status"] != "done") & (runs["data_fingerprint"] == "")
    runs = runs.assign(data_fingerprint=[
        common.get(tuple(r), "") if u else f for r, u, f in
        zip(runs[keys[:-1]].itertuples(index=False), unfinished, runs["data_fingerprint"])])
    for (suite_name, setup, division, suite_sha, protocol_sha, data), group in sorted(runs.groupby(keys),
                                                                                      key=lambda kv: kv[0]):
        data = str(data) if copies.get((suite_name, setup, division, suite_sha, protocol_sha), 0) > 1 else None
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
        for target, at in sorted(group.groupby("target"), key=lambda kv: target_order(str(kv[0]))):
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
            # a finished run not recorded as sandboxed (0, or no planning record at all) is flagged
            sandboxed = at["sandboxed"] if "sandboxed" in at else [None] * len(at)
            unsandboxed = sorted({str(r) for r, sb, status in zip(at["row"], sandboxed, at["status"])
                                  if status == "done" and sb != 1})
            done = pd.concat([at[at["status"] == "done"], used])
            machines = sorted({m or "not recorded" for m in done["machine"]})
            cpu = dict(zip(at["id"], at["method_cpu_seconds"])) if "method_cpu_seconds" in at else {}
            spent = {c.row: [cpu[i] for i in c.runs.values() if pd.notna(cpu.get(i))] for c in complete}  # ranked rows
            tables.append(Table(suite_name, setup, str(target), seeds, dense, complete, incomplete,
                                _all_pairs(complete), note, str(division), unsandboxed, suite_sha, protocol_sha,
                                identity(suite_name, setup, suite_sha, protocol_sha, shipped),
                                machines if len(machines) > 1 else [], _shared(complete + incomplete, at, owners),
                                _disagree(complete + incomplete, results, owners, upstream),
                                data_copy=data, method_cpu={r: round(float(np.mean(s)), 1) for r, s in spent.items() if s}))
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


def _si(x: float | None, digits: int = 3) -> str:
    """1234567 -> '1.23M' (k, M, G, T, P)."""
    if x is None:
        return "-"
    rounded = float(f"{x:.{digits}g}")  # the prefix of the rounded value: 999,999 reads 1M, not 1e+03k
    for power, prefix in ((15, "P"), (12, "T"), (9, "G"), (6, "M"), (3, "k")):
        if abs(rounded) >= 10 ** power:
            return f"{x / 10 ** power:.{digits}g}{prefix}"
    return f"{rounded:g}"


def _apart(lo: float, hi: float, fmt) -> str:
    """'lo–hi' with as many digits (`fmt(value, digits)`) as it takes to tell them apart."""
    if lo == hi:
        return fmt(lo, 3)
    digits = next((d for d in range(3, 7) if fmt(lo, d) != fmt(hi, d)), 7)
    return f"{fmt(lo, digits)}–{fmt(hi, digits)}"


def _span(values, fmt=lambda v: f"{v:g}") -> str:
    """'a' when every value is a, else 'lo–hi'; '-' for none."""
    values = sorted(values)
    if not values:
        return "-"
    return fmt(values[0]) if values[0] == values[-1] else f"{fmt(values[0])}–{fmt(values[-1])}"


def macs_range(t: Table) -> tuple[int, int] | None:
    """The least and most effective MACs of the runs of the table's ranked rows (its complete
    rows where none is ranked)."""
    macs = [m for c in (t.cells or t.incomplete) for m in c.achieved.values()]
    return (min(macs), max(macs)) if macs else None


def target_heading(t: Table) -> str:
    """'target 2x speedup — achieved MACs 1.21M–1.25M (1.96x–2.03x)'."""
    text = f"target {target_label(t.target)}"
    found = macs_range(t)
    if found is None:
        return text
    lo, hi = found
    dense = t.dense.macs if t.dense else None
    speedups = f" ({_apart(dense / hi, dense / lo, lambda v, d: f'{v:.{d - 1}f}x')})" if dense else ""
    return f"{text} — achieved MACs {_apart(lo, hi, _si)}{speedups}"


def heading(t: Table) -> str:
    return f"{t.suite} under {t.setup}, {target_heading(t)}{division_heading(t)}"


UNITS = {"epochs": "epochs", "flops": "FLOPs"}


def budget_text(c: Cell) -> str:
    """The SX budget of a row and the largest share of it a seed's pipeline used."""
    if c.budget_kind is None or not c.budget:
        return "-"
    used = c.total_epochs if c.budget_kind == "epochs" else c.total_train_flops
    shares = [used[s] / b for s, b in c.budget.items() if s in used and b]
    amount = _span(c.budget.values(), (lambda v: f"{v:g}") if c.budget_kind == "epochs" else _si)
    return f"{amount} {UNITS.get(c.budget_kind, c.budget_kind)}" + (f" (used ≤ {max(shares):.1%})" if shares else "")


HEADERS = ["rank", "", "test acc % (mean ± std)", "95% CI", "n", "drop", "vs", "Δ [95% CI]", "p (Holm)",
           "P(A>B)", "verdict", "TA train", "TA test", "MACs", "eff. MACs", "params", "speedup", "epochs",
           "train FLOPs", "budget", "verified", "runs"]
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
        (f"{c.speedup:.2f}x" if c.speedup else "-") + (f" (ratio {_span(c.knob.values(), lambda v: f'{v:.3g}')})"
                                                        if c.knob else ""),
        _span(c.total_epochs.values(), str), _span(c.total_train_flops.values(), _si), budget_text(c),
        VERIFIED[c.verified],
        " ".join(c.runs[s][:8] for s in sorted(c.runs)),
    ]


def _budgeted(t: Table) -> bool:
    return any(c.budget for c in t.cells)


def headers(t: Table) -> list[str]:
    """The table's columns: the budget's only where a row was held to an SX budget."""
    return HEADERS if _budgeted(t) else [h for h in HEADERS if h != "budget"]


def table_rows(t: Table) -> list[list[str]]:
    rows = [_row("-", t.dense)] if t.dense and t.dense.complete else []
    rows += [_row(str(i + 1), c) for i, c in enumerate(t.cells)]
    if not _budgeted(t):
        at = HEADERS.index("budget")
        rows = [r[:at] + r[at + 1:] for r in rows]
    return rows


def missing_rows(t: Table) -> list[list[str]]:
    cells = t.incomplete + ([t.dense] if t.dense and not t.dense.complete else [])
    return [[c.row, f"{len(c.scores)} of {len(t.seeds)}",
             "; ".join(f"seed {s}: {why}" for s, why in sorted(c.missing.items())),
             " ".join(c.runs[s][:8] for s in sorted(c.runs)) or "-"] for c in cells]


def _shared(cells: list[Cell], at: pd.DataFrame, owners: dict[str, tuple[str, str | None]]) -> list[str]:
    """Rows whose runs are the same computation as runs of another row or setup, trained once
    there: 'Scratch-B of random: the training of Scratch-B of l1norm (SX-B), runs 1a2b3c4d ...'."""
    trained_in = dict(zip(at["id"], at["trained_in"])) if "trained_in" in at else {}
    out = []
    for c in cells:
        by_owner: dict[tuple[str, str | None], list[str]] = {}
        for seed in sorted(c.runs):
            owner = trained_in.get(c.runs[seed])
            if isinstance(owner, str) and owner != c.runs[seed] and owner in owners:
                by_owner.setdefault(owners[owner], []).append(owner[:8])
        out += [f"{c.row}: the training of {row} ({setup or 'base models'}), run{'s' if len(ids) > 1 else ''} "
                f"{' '.join(ids)}" for (row, setup), ids in by_owner.items()]
    return out


def _results(root: Path, df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The test accuracy of every finished run with the computation its spec says it is
    (`records.computation`): {run id: {"id": ..., "key": ..., "acc": acc}}."""
    runs_dir, results = paths.runs_dir(root), {}
    done = df[df["status"] == "done"] if "status" in df else df.iloc[0:0]
    for run_id, acc in zip(done["id"], done["test_acc"]):
        if (which := records.computation(runs_dir / run_id)) is not None:
            results[run_id] = {**which, "acc": acc}
    return results


def _upstream(root: Path, done: list[str]) -> dict[str, list[str]]:
    """What a finished run's result rests on that another run holds otherwise, by run id: the base
    weights a pruned run started from against its base run's, or against another pin of one base
    the store does not hold (`records.base_conflicts`); a scratch baseline's architecture against
    its pruned run's plan (`records.mismatched_scratch`)."""
    runs_dir, said = paths.runs_dir(root), {}
    for start, other in records.base_conflicts([runs_dir / run_id for run_id in done]):
        mine, theirs = start["model_sha256"][:12], other["model_sha256"][:12]
        if other.get("kind") == "base":
            said.setdefault(start["run"], []).append(
                f"started from base weights {mine}…, and its base, run {other['run'][:8]}, holds {theirs}…")
        else:
            base = start["base"][:8]
            said.setdefault(start["run"], []).append(f"started from base weights {mine}… of base run {base} (not "
                                                     f"here), and run {other['run'][:8]} from {theirs}…")
            said.setdefault(other["run"], []).append(f"started from base weights {theirs}… of base run {base} (not "
                                                     f"here), and run {start['run'][:8]} from {mine}…")
    for scratch, pruned in records.mismatched_scratch([runs_dir / run_id for run_id in done]):
        said.setdefault(scratch.name, []).append(f"is a scratch baseline of another architecture than its pruned "
                                                 f"run {pruned.name[:8]} was pruned to")
        said.setdefault(pruned.name, []).append(f"was pruned to another architecture than its scratch baseline, "
                                                f"run {scratch.name[:8]}, trains")
    return said


def _disagree(cells: list[Cell], results: dict[str, dict[str, Any]],
              owners: dict[str, tuple[str, str | None]], upstream: dict[str, list[str]]) -> list[str]:
    """Rows with a run whose computation another run holds with another result: one computation
    trained twice to two results (trained again since on another machine, or records put together
    from parts that disagree), or whose result rests on a base or an architecture another run holds
    otherwise (`_upstream`). A table cannot tell which is right, so it says so."""

    def where(run_id: str) -> str:
        row, setup = owners.get(run_id, (None, None))
        return f"{row}, {setup}" if row else "a base model"

    out = []
    for c in cells:
        for seed in sorted(c.runs):
            mine = c.runs[seed]
            held = results.get(mine)
            others = [(other, r["acc"]) for other, r in sorted(results.items()) if held and other != mine
                      and records.same_computation(r, held) and r["acc"] != held["acc"]]
            if held and others:
                out.append(f"{c.row}, seed {seed}: run {mine[:8]} holds {held['acc']}%, "
                           + ", ".join(f"run {other[:8]} ({where(other)}) {acc}%" for other, acc in others))
            out += [f"{c.row}, seed {seed}: run {mine[:8]} {line}" for line in upstream.get(mine, [])]
    return out


def disagree_line(t: Table) -> str:
    return ("One computation, more than one result (trained again, on a machine whose arithmetic differs, or run "
            "records put together from parts that disagree; which is right cannot be told from here): "
            + "; ".join(t.disagree) + ".") if t.disagree else ""


def shared_line(t: Table) -> str:
    return ("Trained once (the same computation: base, plan, recipe, seed), each audited against this protocol: "
            + "; ".join(t.shared) + ".") if t.shared else ""


def superseded_line(t: Table) -> str:
    """Older runs of a seed, left out, each with its result beside the run shown: which of two
    results of a seed a table shows is a choice (the latest), so the reader sees both."""
    old = []
    for c in t.cells + t.incomplete:
        for run_id in c.superseded:
            r = c.superseded_results[run_id]
            shown = c.runs.get(r["seed"])
            now = (f"shown: run {shown[:8]}, {c.scores[r['seed']]:.2f}%" if shown and r["seed"] in c.scores
                   else "none shown")
            old.append(f"{c.row}, seed {r['seed']}: run {run_id[:8]}, {r['test_acc']:.2f}% ({now})")
    return ("Superseded runs, left out (an earlier run of the same seed and method code; the latest is shown): "
            + "; ".join(old) + ".") if old else ""


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
    "weight each layer by its non-zero fraction (masked models); speedup from effective MACs (at a speedup "
    "target, with the ratio the harness's search found for it). The heading's achieved MACs: the least and most "
    "effective MACs of the runs of the ranked rows. Epochs and train FLOPs: the whole pipeline's (the base "
    "model's training included), lowest–highest over seeds; budget: the SX-A (epochs) or SX-B (training FLOPs) "
    "budget each pipeline was held to, and the largest share of it a seed used. Verified: ✓ when "
    "`bench verify` re-derived every run of the row (model file, architecture, target, MACs, test accuracy, trace "
    "re-audit, index) and its record is unchanged since; ✗ when one failed; – when not verified (`bench report "
    "--verify` verifies first and refuses rows that fail). Runs: the ids (8 characters) behind each row, by seed."
)


def division_heading(t: Table) -> str:
    return (f" — {t.heading}" if t.heading else "") + (" — OPEN DIVISION" if t.division == "open" else "")


def division_note(t: Table) -> str:
    """What a reader must know about the table's protocol, where its runs ran and how their method
    code ran."""
    notes = []
    if t.identity.startswith("custom"):
        notes.append(f"Its runs were audited against a {t.identity.replace('custom', 'protocol file', 1)} whose "
                     "content is not the file of that name in the protocols folders: they are never ranked with "
                     "the runs of that file.")
    if t.data_copy is not None:
        notes.append(f"Its runs trained on one copy of the data (train and test fingerprint "
                     f"{t.data_copy or 'not recorded'}); other runs of this protocol trained on another copy of "
                     f"{t.suite}'s dataset (other images behind its name, or test images in a train split) and are in "
                     "a table of their own: runs on two copies are never ranked together.")
    if t.machines:
        notes.append(f"Its runs come from {len(t.machines)} machines ({'; '.join(t.machines)}): floating-point "
                     "kernels differ between CPUs and GPUs, so equal runs can differ slightly between them.")
    if t.division == "open":
        notes.append("Open division: method code ran inside the training process (`--division open`); these rows "
                     "are not comparable with the closed division's and are ranked only against each other.")
    if t.unsandboxed:
        notes.append(f"Planning not sandboxed for: {', '.join(t.unsandboxed)} (bubblewrap absent, --sandbox off, or "
                     "no planning record).")
    if t.method_cpu:
        spent = sorted(t.method_cpu.items(), key=lambda kv: -kv[1])
        notes.append("Compute in method code, not counted in training FLOPs (CPU seconds a run, mean over seeds: "
                     "planning, target search, intents; measured by the harness from outside the planning worker): "
                     + ", ".join(f"{row} {s:.1f} s" for row, s in spent) + ".")
    return " ".join(notes)


def _p_is(p: float) -> str:
    """'p = 0.012' or 'p < 0.001'."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def lead(t: Table) -> str:
    """One line on a table: its best row (highest mean) and whether its lead over the second-best
    row is significant (the table's all-pairs test, Benjamini-Hochberg adjusted p < 0.05)."""
    where = f"{t.suite} under {t.setup}, {target_label(t.target)}{division_heading(t)}"
    if not t.cells:
        return f"{where}: no row has every seed"
    best = t.cells[0]
    text = f"{where}: best {best.row} ({best.summary.mean:.2f}%, n = {best.summary.n})"  # type: ignore[union-attr]
    if len(t.cells) == 1:
        return text + ", the only complete row"
    second = t.cells[1]
    found = next(((c, p) for a, b, c, p in t.pairs if {a, b} == {best.row, second.row}), None)
    gap = best.summary.mean - second.summary.mean  # type: ignore[union-attr]
    text += f"; lead over {second.row} ({gap:+.2f})"
    if found is None or found[0].test is None or found[1] is None:
        return text + f" not tested (fewer than {stats.MIN_N} seeds)"
    p = found[1]
    return text + (" significant" if p < stats.ALPHA else " not significant") + f" ({_p_is(p)}, BH)"


def page_slug(t: Table) -> str:
    """The page a table belongs to: one per suite and protocol content."""
    return _slug(f"{t.suite}_{t.setup}" + (f"_{t.content_key}" if t.content_key else ""))


def page_title(t: Table) -> str:
    return f"{t.suite} under {t.setup}" + (f" ({t.heading})" if t.heading else "")


def pages(tables: list[Table]) -> dict[str, list[Table]]:
    out: dict[str, list[Table]] = {}
    for t in tables:
        out.setdefault(page_slug(t), []).append(t)
    return out


@dataclass(frozen=True)
class Plot:
    """A figure saved twice: PNG (embedded in the HTML page, linked from Markdown) and SVG."""

    png: Path
    svg: Path
    caption: str


def _figure_md(p: Plot) -> str:
    return f"![{p.png.stem}]({p.png.name})\n\n*{p.caption}* (vector: [{p.svg.name}]({p.svg.name}))\n"


def markdown(t: Table, plots: list[Plot]) -> str:
    out = [f"## {heading(t)}", "",
           *([division_note(t), ""] if division_note(t) else []),
           f"Seeds expected: {', '.join(map(str, t.seeds))}.", "",
           tabulate(table_rows(t), headers=headers(t), tablefmt="github", disable_numparse=True), ""]
    if missing := missing_rows(t):
        out += ["**Not in the leaderboard** (a seed is missing; nothing is averaged over fewer seeds):", "",
                tabulate(missing, headers=["row", "seeds done", "missing", "runs done"], tablefmt="github"), ""]
    if t.reference_note:
        out += [t.reference_note, ""]
    if superseded := superseded_line(t):
        out += [superseded, ""]
    if shared := shared_line(t):
        out += [shared, ""]
    if disagree := disagree_line(t):
        out += [f"**{disagree}**", ""]
    if t.pairs:
        out += ["All pairs (p adjusted by Benjamini–Hochberg across the pairs of this table):", "",
                tabulate(pair_rows(t), headers=["A", "B", "Δ (A − B)", "95% CI", "test", "p (BH)", "verdict"],
                         tablefmt="github", disable_numparse=True), ""]
    out += [_figure_md(p) for p in plots]
    return "\n".join(out) + "\n"


def _table_html(rows: list[list[str]], headers: list[str], cls: str) -> str:
    return '<div class="scroll">' + tabulate(rows, headers=headers, tablefmt="html", disable_numparse=True).replace(
        "<table>", f'<table class="{cls}">', 1) + "</div>"


CSS = """
body { font-family: system-ui, sans-serif; margin: 1.2em; color: #222; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
h3 { margin-top: 1.6em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.72em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.3em; text-align: right; }
td { white-space: nowrap; }
td:nth-child(2), th:nth-child(2) { text-align: left; }
table.leaderboard td:last-child { font-size: 0.9em; }
th { background: #f2f2f2; vertical-align: bottom; }
figure { margin: 0.5em 0 2em; }
img { max-width: 100%; display: block; }
figcaption, .note { font-size: 0.85em; color: #555; max-width: 70em; }
.warning { font-size: 0.85em; color: #a00; font-weight: 600; max-width: 70em; }
nav ol { margin: 0.2em 0; }
#summary li { margin: 0.2em 0; }
"""


def _figure_html(p: Plot) -> str:
    data = base64.b64encode(p.png.read_bytes()).decode()
    return (f'<figure><img class="plot" alt="{html.escape(p.caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(p.caption)} (files: {html.escape(p.png.name)}, "
            f"{html.escape(p.svg.name)})</figcaption></figure>")


def html_page(tables: list[Table], curves: dict[str, list[Plot]], figures: dict[str, list[Plot]],
              notes: dict[str, list[str]] | None = None, source: list[str] | None = None) -> str:
    """One self-contained page: a summary, a table of contents, then per suite and setup its tables
    and figures; styles inline, figures embedded as data URIs (no network needed). `curves`: by
    table slug; `figures`: by page slug."""
    esc = html.escape
    grouped = pages(tables)
    suites = sorted({t.suite for t in tables})
    setups = list(dict.fromkeys(t.setup for t in tables))
    body = ["<h1>prunebench leaderboard</h1>", '<section id="summary"><h2>Summary</h2>',
            (f"<p>Suite{'s' if len(suites) > 1 else ''}: {esc(', '.join(suites))}. "
            f"Setup{'s' if len(setups) > 1 else ''}: {esc(', '.join(setups))}. {len(tables)} "
            f"table{'s' if len(tables) > 1 else ''}; the best row of each (highest mean) and whether its lead over "
            "the second-best row is significant (Benjamini–Hochberg adjusted p &lt; 0.05 over the table's pairs):</p>"),
            "<ul>", *(f'<li><a href="#{t.slug}">{esc(lead(t))}</a></li>' for t in tables), "</ul></section>"]
    toc = ['<nav id="contents"><h2>Contents</h2><ol>', '<li><a href="#summary">Summary</a></li>',
           '<li><a href="#notes">Notes</a></li>']
    for slug, group in grouped.items():
        toc.append(f'<li><a href="#page-{slug}">{esc(page_title(group[0]))}</a><ol>')
        toc += [f'<li><a href="#{t.slug}">{esc(target_heading(t) + division_heading(t))}</a></li>' for t in group]
        if figures.get(slug):
            toc.append(f'<li><a href="#figures-{slug}">Figures</a></li>')
        toc.append("</ol></li>")
    toc.append("</ol></nav>")
    body += toc
    body.append(f'<section id="notes"><h2>Notes</h2><p class="note">{esc(NOTES)}</p>'
                + "".join(f'<p class="note">{esc(line)}</p>' for line in source or () if line) + "</section>")
    for slug, group in grouped.items():
        body.append(f'<section><h2 id="page-{slug}">{esc(page_title(group[0]))}</h2>')
        for t in group:
            body.append(f'<h3 id="{t.slug}">{esc(target_heading(t) + division_heading(t))}</h3>')
            if note := division_note(t):
                body.append(f'<p class="note"><b>{esc(note)}</b></p>')
            body.append(f"<p>Seeds expected: {', '.join(map(str, t.seeds))}.</p>")
            body.append(_table_html(table_rows(t), headers(t), "leaderboard"))
            if missing := missing_rows(t):
                body.append("<p><b>Not in the leaderboard</b> (a seed is missing):</p>")
                body.append(_table_html(missing, ["row", "seeds done", "missing", "runs done"], "missing"))
            if t.reference_note:
                body.append(f"<p>{esc(t.reference_note)}</p>")
            if superseded := superseded_line(t):
                body.append(f"<p>{esc(superseded)}</p>")
            if shared := shared_line(t):
                body.append(f'<p class="note">{esc(shared)}</p>')
            if disagree := disagree_line(t):
                body.append(f'<p class="warning">{esc(disagree)}</p>')
            if t.pairs:
                body.append("<p>All pairs (p adjusted by Benjamini–Hochberg):</p>")
                body.append(_table_html(pair_rows(t), ["A", "B", "Δ (A − B)", "95% CI", "test", "p (BH)", "verdict"],
                                        "pairs"))
            body += [_figure_html(p) for p in curves.get(t.slug, [])]
        if figures.get(slug):
            body.append(f'<h3 id="figures-{slug}">Figures: {esc(page_title(group[0]))}</h3>')
            body += [_figure_html(p) for p in figures[slug]]
        body += [f'<p class="note">{esc(note)}</p>' for note in (notes or {}).get(slug, [])]
        body.append("</section>")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>prunebench leaderboard</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


# --- figures -------------------------------------------------------------------------------
# Built with the Figure API (no pyplot, no global backend), styled inside an rc_context.

STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8,
         "ytick.labelsize": 8, "figure.titlesize": 10, "axes.grid": True, "grid.alpha": 0.3,
         "svg.fonttype": "none", "svg.hashsalt": "prunebench"}  # SVG text stays text; ids reproducible
MARKERS = "osD^vP*Xh<>p"


@dataclass(frozen=True)
class Point:
    """One plotted mean and its 95% t-interval (None with a single seed)."""

    x: float
    y: float
    ci: tuple[float, float] | None
    target: str


def _point(x: float, s: stats.Summary, target: str) -> Point:
    return Point(float(x), s.mean, s.ci, target)


def _err(points: list[Point]) -> np.ndarray:
    """Error bar lengths below and above each mean, shape (2, n); 0 where there is no interval."""
    return np.array([[p.y - p.ci[0] if p.ci else 0.0 for p in points],
                     [p.ci[1] - p.y if p.ci else 0.0 for p in points]])


def _series(t: Table, c: Cell) -> str:
    return c.row + (" [open division]" if t.division == "open" else "")


def _dense_label(n: int) -> str:
    return _wrap(f"dense model (mean of {n} seed{'' if n == 1 else 's'})")


def _wrap(text: str, width: int = 34) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def _palette(labels) -> dict[str, tuple]:
    labels = sorted(set(labels))
    cmap = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def _dense(tables: list[Table]) -> Cell | None:
    return next((t.dense for t in tables if t.dense and t.dense.complete and t.dense.summary), None)


def _name_errorbars(container, prefix: str, axes: str = "y") -> None:
    """Give an errorbar's bar collections SVG ids, '<prefix>-x' and '<prefix>-y'; `axes`: those
    it has, in the order matplotlib makes them (x before y)."""
    for bars, axis in zip(container.lines[2], axes, strict=True):
        bars.set_gid(f"{prefix}-{axis}")


def _save(fig: Figure, base: Path, caption: str) -> Plot:
    png, svg = base.parent / f"{base.name}.png", base.parent / f"{base.name}.svg"
    with matplotlib.rc_context(STYLE):
        fig.savefig(png, dpi=150, metadata={"Software": None})
        fig.savefig(svg, metadata={"Date": None})
    return Plot(png, svg, caption)


def _legend(fig: Figure, **kwargs) -> None:
    fig.legend(loc="outside right upper", frameon=False, **kwargs)


def pareto_series(tables: list[Table]) -> dict[str, list[Point]]:
    """Per row label: (effective MACs, mean accuracy, 95% CI) at each of its targets, by MACs."""
    series: dict[str, list[Point]] = {}
    for t in tables:
        for c in t.cells:
            if c.effective_macs is not None and c.summary is not None:
                series.setdefault(_series(t, c), []).append(_point(c.effective_macs, c.summary, t.target))
    return {k: sorted(v, key=lambda p: p.x) for k, v in sorted(series.items())}


def _macs_ticks(axis, lo: float, hi: float) -> None:
    """Readable ticks on a log MACs axis between lo and hi, also over less than a decade: 1-2-5
    steps, finer ones, else evenly spaced."""
    ticks: list[float] = []
    for subs in ((1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0)):
        ticks = [v for v in matplotlib.ticker.LogLocator(subs=subs).tick_values(lo, hi) if lo <= v <= hi]
        if len(ticks) >= 3:
            break
    if len(ticks) < 3:
        ticks = [v for v in MaxNLocator(5).tick_values(lo, hi) if lo <= v <= hi and v > 0]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(EngFormatter(sep=""))
    axis.set_minor_locator(NullLocator())


def pareto_figure(tables: list[Table]) -> Figure | None:
    """Final accuracy (mean ± 95% CI over seeds) against MACs, a line per row through its
    targets; the dense model as a horizontal reference."""
    series = pareto_series(tables)
    if not series:
        return None
    masked = {_series(t, c) for t in tables for c in t.cells
              if c.macs and c.effective_macs is not None and c.effective_macs < c.macs}
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(8.5, 4.6), layout="constrained")
        ax = fig.add_subplot()
        colors = _palette(series)
        xs = [p.x for pts in series.values() for p in pts]
        for i, (label, pts) in enumerate(series.items()):
            bars = ax.errorbar([p.x for p in pts], [p.y for p in pts], yerr=_err(pts), color=colors[label],
                               marker=MARKERS[i % len(MARKERS)], markersize=5, capsize=3, linewidth=1.2,
                               linestyle="--" if label.startswith("Scratch") else "-",
                               label=_wrap(label + (" (effective MACs)" if label in masked else "")))
            _name_errorbars(bars, f"errorbars-{_slug(label)}")
        dense = _dense(tables)
        if dense is not None and dense.summary is not None:
            ax.axhline(dense.summary.mean, color="0.25", linestyle=":", linewidth=1.2,
                       label=_dense_label(dense.summary.n))
            if dense.summary.ci:
                ax.axhspan(*dense.summary.ci, color="0.5", alpha=0.12, linewidth=0, label="dense 95% CI")
            if dense.macs:
                ax.plot([dense.macs], [dense.summary.mean], marker="*", markersize=10, color="0.25", linestyle="none")
                xs.append(dense.macs)
        ax.set_xscale("log")
        ax.set_xlim(min(xs) / 1.15, max(xs) * 1.15)
        _macs_ticks(ax.xaxis, *ax.get_xlim())
        ax.set_xlabel("MACs per image (log scale; effective MACs for masked, weight-level rows)")
        ax.set_ylabel("final test accuracy (%), mean ± 95% CI")
        ax.set_title(f"{page_title(tables[0])}: accuracy against MACs")
        _legend(fig)
    return fig


def plot_pareto(tables: list[Table], base: Path) -> Plot | None:
    fig = pareto_figure(tables)
    return _save(fig, base, f"{page_title(tables[0])}: final test accuracy (mean over seeds, 95% t-interval) against "
                 "MACs per image, every row through its targets; the dotted line is the dense model.") if fig else None


def target_series(tables: list[Table]) -> dict[str, dict[str, list[Point]]]:
    """Per target kind ('ratio', 'speedup', 'config') and row label: the mean accuracy and its
    95% CI at each target; x is the ratio or speedup, or a named config's position (`target_configs`)."""
    configs = target_configs(tables)
    out: dict[str, dict[str, list[Point]]] = {}
    for t in sorted(tables, key=lambda t: target_order(t.target)):
        kind, value = parse_target(t.target)
        x = configs.index(str(value)) if kind == "config" else float(value)
        for c in t.cells:
            if c.summary is not None:
                out.setdefault(kind, {}).setdefault(_series(t, c), []).append(_point(x, c.summary, t.target))
    return {kind: dict(sorted(out[kind].items())) for kind in TARGET_KINDS if kind in out}


def target_configs(tables: list[Table]) -> list[str]:
    return sorted({str(v) for k, v in (parse_target(t.target) for t in tables) if k == "config"})


AXES = {"ratio": "pruning ratio", "speedup": "speedup target (dense MACs / pruned MACs)", "config": "named configuration"}


def target_figure(tables: list[Table]) -> Figure | None:
    """Final accuracy (mean ± 95% CI) against the target: a panel per kind of target; rows at one
    target are set side by side (a few points apart) so that their bars do not hide each other."""
    found = target_series(tables)
    if not found:
        return None
    configs = target_configs(tables)
    labels = sorted({label for rows in found.values() for label in rows})
    colors = _palette(labels)
    dense = _dense(tables)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(3.6 * len(found) + 3.0, 4.2), layout="constrained")
        axes = fig.subplots(1, len(found), sharey=True, squeeze=False)[0]
        for ax, (kind, rows) in zip(axes, found.items()):
            values = sorted({p.x for pts in rows.values() for p in pts})
            if kind == "speedup":
                ax.set_xscale("log")
                lo, hi = min(values) / 1.3, max(values) * 1.3
            elif kind == "ratio":
                pad = max(0.08, 0.08 * (max(values) - min(values)))
                lo, hi = min(values) - pad, max(values) + pad
            else:
                lo, hi = -0.6, len(configs) - 0.4
            ax.set_xlim(lo, hi)
            for i, (label, pts) in enumerate(rows.items()):
                # side by side: a small fraction of the axis per row, in the axis's own scale
                share = (i - (len(rows) - 1) / 2) * min(0.015, 0.12 / max(1, len(rows)))
                xs = [p.x * (hi / lo) ** share if kind == "speedup" else p.x + share * (hi - lo) for p in pts]
                bars = ax.errorbar(xs, [p.y for p in pts], yerr=_err(pts), color=colors[label],
                                   marker=MARKERS[labels.index(label) % len(MARKERS)], markersize=5, capsize=3,
                                   linewidth=1.0, linestyle="--" if label.startswith("Scratch") else "-",
                                   label=_wrap(label) if ax is axes[0] else None)
                _name_errorbars(bars, f"errorbars-{kind}-{_slug(label)}")
            if dense is not None and dense.summary is not None:
                ax.axhline(dense.summary.mean, color="0.25", linestyle=":", linewidth=1.2,
                           label=_dense_label(dense.summary.n) if ax is axes[0] else None)
                if dense.summary.ci:
                    ax.axhspan(*dense.summary.ci, color="0.5", alpha=0.12, linewidth=0,
                               label="dense 95% CI" if ax is axes[0] else None)
            ax.xaxis.set_major_locator(FixedLocator(values))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([configs[int(v)] if kind == "config" else (f"{v:g}x" if kind == "speedup" else f"{v:g}")
                                for v in values])
            ax.set_xlabel(AXES[kind])
        axes[0].set_ylabel("final test accuracy (%), mean ± 95% CI")
        fig.suptitle(f"{page_title(tables[0])}: accuracy against the pruning target")
        fig.legend(loc="outside right center", frameon=False)
    return fig


def plot_accuracy_vs_target(tables: list[Table], base: Path) -> Plot | None:
    fig = target_figure(tables)
    return _save(fig, base, f"{page_title(tables[0])}: final test accuracy (mean over seeds, 95% t-interval) at each "
                 "pruning target; rows at one target are drawn side by side.") if fig else None


@dataclass(frozen=True)
class TAPoint:
    """A pruned row at one target: its trainability accuracy (train version) and final accuracy,
    each summarised over the seeds."""

    row: str
    target: str
    ta: stats.Summary
    acc: stats.Summary


def ta_points(tables: list[Table]) -> list[TAPoint]:
    """Every pruned row with a trainability accuracy for each of its seeds (scratch baselines and
    the dense model trained from scratch, not from a pruned network: left out)."""
    return [TAPoint(_series(t, c), t.target, stats.summarise([c.ta_scores[s] for s in sorted(c.scores)]), c.summary)
            for t in sorted(tables, key=lambda t: target_order(t.target)) for c in t.cells
            if c.summary is not None and c.row != DENSE and not c.row.startswith("Scratch")
            and c.scores and set(c.scores) <= set(c.ta_scores)]


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho and Kendall's tau (two-sided p) between mean TA and mean final accuracy."""

    n: int
    rho: float
    rho_p: float
    tau: float
    tau_p: float


def rank_correlation(points: list[TAPoint]) -> RankCorrelation | None:
    """Wang et al.'s claim that TA predicts final accuracy, over the points' means; None below 3."""
    if len(points) < 3:
        return None
    x, y = [p.ta.mean for p in points], [p.acc.mean for p in points]
    if len(set(x)) == 1 or len(set(y)) == 1:  # undefined (scipy would warn): said so in the text
        return RankCorrelation(len(points), math.nan, math.nan, math.nan, math.nan)
    rho, tau = sps.spearmanr(x, y), sps.kendalltau(x, y)
    return RankCorrelation(len(points), float(rho.statistic), float(rho.pvalue), float(tau.statistic),
                           float(tau.pvalue))


def correlation_text(points: list[TAPoint]) -> str:
    r = rank_correlation(points)
    if r is None:
        return f"{len(points)} point{'s' if len(points) != 1 else ''}: too few for a rank correlation"
    if math.isnan(r.rho) or math.isnan(r.tau):
        return f"rank correlation undefined (TA or accuracy constant over the {r.n} points)"
    return (f"Spearman ρ = {r.rho:.2f} ({_p_is(r.rho_p)}), Kendall τ = {r.tau:.2f} ({_p_is(r.tau_p)}); "
            f"n = {r.n} rows × targets")


TA_MIN_POINTS = 3  # fewer pruned (row, target) points say nothing about Wang et al.'s claim


def ta_figure(tables: list[Table]) -> Figure | None:
    """Final accuracy against trainability accuracy, both mean ± 95% CI over seeds; colour by
    row, marker by target; the rank correlation in the title. None below TA_MIN_POINTS points."""
    points = ta_points(tables)
    if len(points) < TA_MIN_POINTS:
        return None
    colors = _palette(p.row for p in points)
    targets = sorted({p.target for p in points}, key=target_order)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(8.5, 4.8), layout="constrained")
        ax = fig.add_subplot()
        for i, p in enumerate(points):
            bars = ax.errorbar([p.ta.mean], [p.acc.mean],
                               xerr=[[p.ta.mean - p.ta.ci[0]], [p.ta.ci[1] - p.ta.mean]] if p.ta.ci else None,
                               yerr=[[p.acc.mean - p.acc.ci[0]], [p.acc.ci[1] - p.acc.mean]] if p.acc.ci else None,
                               color=colors[p.row], marker=MARKERS[targets.index(p.target) % len(MARKERS)],
                               markersize=6, capsize=2.5, elinewidth=0.9, linestyle="none", zorder=3)
            for part in (*bars.lines[1], *bars.lines[2]):  # light bars: the points stay readable where they cross
                part.set_alpha(0.55)
            _name_errorbars(bars, f"errorbars-{i}", ("x" if p.ta.ci else "") + ("y" if p.acc.ci else ""))
        ax.margins(0.12)
        handles = [Line2D([], [], color=c, marker="o", linestyle="none", label=_wrap(row)) for row, c in colors.items()]
        if len(targets) > 1:
            handles += [Line2D([], [], color="0.4", marker=MARKERS[i % len(MARKERS)], linestyle="none",
                               label=f"target {target_label(t)}") for i, t in enumerate(targets)]
        _legend(fig, handles=handles)
        ax.set_xlabel("trainability accuracy, train (%) — Wang et al. Eq. 1; mean ± 95% CI")
        ax.set_ylabel("final test accuracy (%), mean ± 95% CI")
        ax.set_title(correlation_text(points), fontsize=9)
        fig.suptitle(_wrap(f"{page_title(tables[0])}: trainability accuracy against final accuracy"  # clear of
                           + (f" (target {target_label(targets[0])})" if len(targets) == 1 else ""), 48))  # the legend
    return fig


def left_out(tables: list[Table]) -> list[str]:
    """What a page's figures leave out, and why."""
    notes = []
    if len(points := ta_points(tables)) < TA_MIN_POINTS:
        notes.append(f"No trainability-accuracy figure: {len(points)} pruned row × target point"
                     f"{'s' if len(points) != 1 else ''} with TA for every seed, fewer than {TA_MIN_POINTS}.")
    return notes


def plot_ta_vs_final(tables: list[Table], base: Path) -> Plot | None:
    fig = ta_figure(tables)
    return _save(fig, base, f"{page_title(tables[0])}: trainability accuracy (Wang et al. Eq. 1, train version) "
                 "against final test accuracy of the pruned rows, 95% t-intervals on both axes; Spearman's and "
                 "Kendall's rank correlations over the points' means.") if fig else None


def curve_bands(epochs: pd.DataFrame) -> pd.DataFrame:
    """The final phase (each run's last) of a row's runs, per epoch (1-based): train and test
    accuracy as mean, min and max over the seeds, the LR, and n (runs at that epoch)."""
    epochs = epochs.sort_values(["run_id", "step"])
    last = epochs.groupby("run_id")["phase"].transform("last")
    final = epochs[epochs["phase"] == last].groupby("epoch")
    out = pd.DataFrame({f"{what}_{how}": getattr(final[f"{what}_acc"], how)()
                        for what in ("train", "test") for how in ("mean", "min", "max")})
    out["lr"] = final["lr"].mean()
    out["n"] = final["run_id"].nunique()
    out.index = out.index + 1
    return out


def curves_figure(store: Store, t: Table) -> Figure | None:
    """Per row: train and test accuracy of the final phase (retraining, or a scratch run's
    training), mean over seeds with the min–max band of the seeds, the LR on a second axis."""
    cells = [c for c in t.cells if c.runs]
    epochs = load_epochs(store, [r for c in cells for r in c.runs.values()])
    if epochs.empty:
        return None
    cols = min(3, len(cells))
    rows = math.ceil(len(cells) / cols)
    width = 3.6 * cols + 0.6
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, 2.7 * rows + 1.0), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False, sharey=True)  # one accuracy scale: rows compare at a glance
        for ax, c in zip(axes.flat, cells):
            runs = epochs[epochs["run_id"].isin(set(c.runs.values()))]
            band = curve_bands(runs)
            x = band.index
            for what, color in (("train", "C0"), ("test", "C1")):
                ax.fill_between(x, band[f"{what}_min"], band[f"{what}_max"], color=color, alpha=0.2, linewidth=0)
                ax.plot(x, band[f"{what}_mean"], color=color, marker="o" if len(x) < 12 else None, markersize=3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch of the final phase")
            ax.yaxis.set_tick_params(labelleft=True)
            ax.set_ylabel("accuracy (%)")
            ax.set_title(_wrap(f"{c.row} (n = {len(c.runs)})", 40), fontsize=9)
            lr_ax = ax.twinx()
            lr_ax.grid(False)
            lr_ax.step(x, band["lr"], where="mid", color="0.45", linestyle=":", linewidth=1.2)
            if band["lr"].min() > 0 and band["lr"].max() / band["lr"].min() >= 10:
                lr_ax.set_yscale("log")
                levels = sorted(set(band["lr"]))  # a step schedule's LRs as ticks; a cosine one's by decade
                lr_ax.yaxis.set_major_locator(FixedLocator(levels) if len(levels) <= 4 else LogLocator(base=10))
                lr_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                lr_ax.yaxis.set_minor_locator(NullLocator())
            lr_ax.set_ylabel("LR", color="0.45")
            lr_ax.tick_params(axis="y", colors="0.45")
        for ax in list(axes.flat)[len(cells):]:
            ax.axis("off")
        handles = [Line2D([], [], color="C0", label="train accuracy"), Line2D([], [], color="C1", label="test accuracy"),
                   Line2D([], [], color="0.45", linestyle=":", label="LR (right axis)")]
        fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
        fig.suptitle(_wrap(f"{t.suite} under {t.setup}, target {target_label(t.target)}{division_heading(t)}: "
                           "learning curves, mean over seeds; band: min–max over seeds",
                           min(110, int(12 * width))))  # ~12 characters of the 10-point title an inch
    return fig


def plot_learning_curves(store: Store, t: Table, base: Path) -> Plot | None:
    fig = curves_figure(store, t)
    return _save(fig, base, f"{t.suite} under {t.setup}, target {target_label(t.target)}: train and test accuracy "
                 "per epoch of each row's final phase (retraining, or a scratch run's training), mean over seeds; "
                 "the band spans the lowest to the highest seed; the LR on the right axis.") if fig else None


# --- the report ----------------------------------------------------------------------------

def write_report(store: Store, out: Path, suite: str | None = None, protocol: str | None = None,
                 reference: str | None = None, verified_only: bool = False,
                 verdicts: list | None = None) -> list[Path]:
    """Write the Markdown leaderboards (one per suite and protocol), figures (PNG and SVG) and
    `index.html` into `out`; return the files written."""
    tables = build(store, suite, protocol, reference, verified_only, verdicts)
    if not tables:
        raise UserError(f"the store {store.root} has no pruned or scratch runs"
                        f"{' of suite ' + repr(suite) if suite else ''}{' under ' + protocol if protocol else ''}; "
                        "run `bench run` first.")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the report.")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    curves: dict[str, list[Plot]] = {}
    figures: dict[str, list[Plot]] = {}
    for slug, group in pages(tables).items():
        figures[slug] = [p for p in (plot_pareto(group, out / f"{slug}_pareto"),
                                     plot_accuracy_vs_target(group, out / f"{slug}_accuracy_vs_target"),
                                     plot_ta_vs_final(group, out / f"{slug}_ta_vs_final")) if p]
        parts = [f"# Leaderboard: {page_title(group[0])}", "", NOTES, "", *_source(store), "Summary:", "",
                 *(f"- {lead(t)}" for t in group), ""]
        for t in group:
            plot = plot_learning_curves(store, t, out / f"{t.slug}_curves")
            curves[t.slug] = [plot] if plot else []
            parts.append(markdown(t, curves[t.slug]))
        if figures[slug]:
            parts += [f"## Figures: {page_title(group[0])}", "", *(_figure_md(p) for p in figures[slug])]
        parts += [*(f"{note}\n" for note in left_out(group))]
        md = out / f"{slug}.md"
        md.write_text("\n".join(parts) + "\n")
        written += [md, *(f for p in figures[slug] + [p for t in group for p in curves[t.slug]] for f in (p.png, p.svg))]
    page = out / "index.html"
    page.write_text(html_page(tables, curves, figures, {slug: left_out(group) for slug, group in pages(tables).items()},
                              _source(store)))
    written.append(page)
    (out / "leaderboard.json").write_text(json.dumps(to_json(tables), indent=1))
    written.append(out / "leaderboard.json")
    return written


def _source(store: Store) -> list[str]:
    """Where the numbers come from, when that is run records rather than a store."""
    if not store.records:
        return []
    return ["Reported from run records (`bench export`: each run's spec, plans, trace, metrics and audit record, "
            "without its weights; `records.json` lists the exports). ✓ is the verdict of `bench verify` where the run "
            "trained, and holds while the record's files (with the sha256 of the weights left out) are unchanged.", ""]


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
                "ta_train_by_seed": {str(k): v for k, v in c.ta_scores.items()},
                "effective_macs_by_seed": {str(k): v for k, v in c.achieved.items()},
                "knob": {str(k): v for k, v in c.knob.items()} or None,
                "total_epochs": {str(k): v for k, v in c.total_epochs.items()},
                "total_train_flops": {str(k): v for k, v in c.total_train_flops.items()},
                "budget_kind": c.budget_kind, "budget": {str(k): v for k, v in c.budget.items()} or None,
                "missing": {str(k): v for k, v in c.missing.items()}}
    return [{"suite": t.suite, "setup": t.setup, "target": t.target, "division": t.division,
             "achieved_macs": list(macs_range(t) or ()) or None,
             "suite_sha256": t.suite_sha256 or None, "protocol_sha256": t.protocol_sha256 or None,
             "protocol": t.identity or "as shipped", "data_copy": t.data_copy, "machines": t.machines,
             "unsandboxed": t.unsandboxed, "method_cpu_seconds": t.method_cpu, "seeds": t.seeds,
             "dense": cell(t.dense) if t.dense else None, "cells": [cell(c) for c in t.cells],
             "incomplete": [cell(c) for c in t.incomplete], "reference_note": t.reference_note or None,
             "shared": t.shared, "disagree": t.disagree}
            for t in tables]
