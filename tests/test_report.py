"""The SQLite index, leaderboards and recipe cross-validation, end to end on a tiny synthetic suite."""

import json
import os
import re
import shutil
import sqlite3
import subprocess

import numpy as np
import pytest
from scipy import stats as sps

from prunebench import report, stats
from prunebench.cli import main
from prunebench.crossval import CrossVal, Duel, Pairing, crossval
from prunebench.errors import ProtocolViolation, UserError
from prunebench.protocol_files import load_protocol
from prunebench.report import build, write_report
from prunebench.runner import Harness
from prunebench.store import Store
from tests.conftest import write_yaml
from tests.plugins import UNFAIR

FAST = {"epochs": 2, "lr": "0:0.05,1:0.005", "batch_size": 32, "augment": "flip", "samples_per_epoch": 128}
SEEDS = [0, 1, 2]


@pytest.fixture
def fast_suite(user_protocols):
    folder = user_protocols / "synth-fast"
    write_yaml(folder / "suite.yaml", {"name": "synth-fast", "dataset": "synthetic", "arch": "smallcnn",
                                       "seeds": SEEDS, "base": {**FAST, "epochs": 3, "lr": "0:0.1,2:0.01"}})
    for setup in ("S2", "S3.1", "S3.2"):
        write_yaml(folder / f"{setup}.yaml", {"setup": setup, "suite": "synth-fast", "ratios": [0.5], "retrain": FAST})
    write_yaml(folder / "SX-B.yaml", {"setup": "SX-B", "suite": "synth-fast", "ratios": [0.5], "retrain": FAST,
                                      "budget": {"kind": "flops"}})
    write_yaml(folder / "SX-A.yaml", {"setup": "SX-A", "suite": "synth-fast", "ratios": [0.5], "retrain": FAST,
                                      "budget": {"kind": "epochs"}})
    return folder


def harness(store, setup):
    protocol, _, sha = load_protocol(setup, "synth-fast")
    return Harness(protocol, store=store, protocol_sha256=sha, device="cpu", progress=False, log=lambda m: None,
                   plugins=(UNFAIR,))  # test-longer


def metrics(store, run_id):
    return json.loads((store / "runs" / run_id / "metrics.json").read_text())


def test_index_holds_the_trace_and_both_trainability_accuracies(fast_suite, store):
    h = harness(store, "S2")
    rows = h.run(["l1norm"], seeds=[0])
    run_id = next(r for r in rows if r["row"] == "l1norm")["run_ids"][0]
    trace = json.loads((store / "runs" / run_id / "trace.json").read_text())["rows"]
    s = Store(store)
    epochs = s.query("SELECT phase, epoch, lr, train_acc, test_acc FROM epochs WHERE run_id = ? ORDER BY step",
                     (run_id,))
    assert [(e["phase"], e["epoch"], e["lr"]) for e in epochs] == [("retrain", 0, 0.05), ("retrain", 1, 0.005)]
    assert [e["test_acc"] for e in epochs] == [r["test_acc"] for r in trace]
    (row,) = s.query("SELECT * FROM runs WHERE id = ?", (run_id,))
    # Eq. 1 with N = 1, the first LR stage of '0:0.05,1:0.005'
    assert row["ta_epochs"] == 1
    assert row["ta_train"] == trace[0]["train_acc"] and row["ta_test"] == trace[0]["test_acc"]
    m = metrics(store, run_id)
    assert (m["ta_train"], m["ta_test"]) == (row["ta_train"], row["ta_test"])
    assert row["row"] == "l1norm" and row["target"] == "0.5" and row["setup"] == "S2"


def test_an_older_index_is_rebuilt_from_the_run_directories(fast_suite, store):
    harness(store, "S2").run(["l1norm"], seeds=[0])
    before = {r["id"]: dict(r) for r in Store(store).query("SELECT * FROM runs")}
    db = sqlite3.connect(store / "index.sqlite")  # what the first release wrote: no TA, no trace
    db.executescript("DROP TABLE runs; DROP TABLE epochs; PRAGMA user_version = 0;"
                     "CREATE TABLE runs (id TEXT PRIMARY KEY, kind TEXT, status TEXT);")
    db.close()
    after = {r["id"]: dict(r) for r in Store(store).query("SELECT * FROM runs")}
    assert after.keys() == before.keys()
    for run_id, row in after.items():
        assert {k: v for k, v in row.items() if k != "updated"} == {k: v for k, v in before[run_id].items()
                                                                   if k != "updated"}
    assert Store(store).query("SELECT count(*) FROM epochs")[0][0] == 3 + 2  # base + retraining


@pytest.fixture
def leaderboard_store(fast_suite, tmp_path_factory):
    """S2: l1norm, random and magnitude over three seeds, `taylor` over two, a method that breaks
    S3.1, and a run left unfinished."""
    store = tmp_path_factory.mktemp("lb") / "store"
    harness(store, "S2").run(["l1norm", "random", "magnitude"], seeds=SEEDS)
    harness(store, "S2").run(["taylor"], seeds=[0, 1])
    harness(store, "SX-B").run(["l1norm"], seeds=SEEDS)
    h = harness(store, "S3.1")
    h.run(["l1norm"], seeds=SEEDS)
    with pytest.raises(ProtocolViolation):
        h.run(["test-longer"], seeds=SEEDS)
    # a run killed mid-training: started (indexed 'running'), never finished
    h = harness(store, "S3.1")
    planned = next(p for p in h.plan(["random"], seeds=[0]) if p.spec.kind == "pruned")
    Store(store).prepare(planned.spec)
    Store(store).index(planned.spec, "running", h.audited_against(planned.spec))  # what the harness indexes
    return store


def test_leaderboard_statistics_equal_scipy_on_the_stored_runs(leaderboard_store):
    store = leaderboard_store
    built = build(Store(store))
    tables = {(t.setup, t.target): t for t in built}
    t = tables[("S2", "0.5")]
    assert t.seeds == SEEDS
    cells = {c.row: c for c in t.cells}
    assert set(cells) == {"l1norm", "random", "magnitude"}  # taylor lacks seed 2: not ranked
    assert [c.summary.mean for c in t.cells] == sorted([c.summary.mean for c in t.cells], reverse=True)
    acc = {row: {s: metrics(store, rid)["test_acc"] for s, rid in c.runs.items()} for row, c in cells.items()}
    for row, c in cells.items():
        x = np.array([acc[row][s] for s in SEEDS])
        assert c.summary.mean == pytest.approx(x.mean())
        assert c.summary.ci == pytest.approx(sps.t.interval(0.95, 2, loc=x.mean(), scale=x.std(ddof=1) / np.sqrt(3)))
        base = [metrics(store, rid)["base_test_acc"] for rid in c.runs.values()]
        assert c.drop == pytest.approx(np.mean(base) - x.mean())
    # against l1norm, paired by seed, Holm over the two tests of the table
    p = {row: sps.ttest_rel([acc[row][s] for s in SEEDS], [acc["l1norm"][s] for s in SEEDS]).pvalue
         for row in ("random", "magnitude")}
    holm = stats.holm([p["random"], p["magnitude"]])
    for row, adjusted in zip(("random", "magnitude"), holm):
        c = cells[row]
        assert c.reference == "l1norm" and c.comparison.test == "paired t"
        assert c.comparison.p == pytest.approx(p[row])
        assert c.p_adjusted == pytest.approx(adjusted)
        assert c.verdict == stats.verdict(c.comparison, adjusted)
    assert cells["l1norm"].comparison is None
    taylor = next(c for c in t.incomplete if c.row == "taylor")
    assert taylor.missing == {2: "not run"} and len(taylor.scores) == 2

    sxb = {c.row: c for c in tables[("SX-B", "0.5")].cells}
    assert sxb["l1norm"].reference == "Scratch-B of l1norm" and sxb["l1norm"].comparison.test == "paired t"
    scratch = sxb["Scratch-B of l1norm"]
    dense = tables[("SX-B", "0.5")].dense
    assert scratch.drop == pytest.approx(np.mean([dense.scores[s] - scratch.scores[s] for s in SEEDS]))
    # --reference: every other row against the one named
    chosen = {c.row: c for c in build(Store(store), protocol="S2", reference="random")[0].cells}
    assert chosen["l1norm"].reference == "random" and chosen["random"].comparison is None
    assert chosen["l1norm"].comparison.delta == pytest.approx(-cells["random"].comparison.delta)
    with pytest.raises(UserError, match="--reference 'randm' is not a row"):
        build(Store(store), reference="randm")
    # all pairs, Benjamini-Hochberg over the table's three pairs
    pairs = {(a, b): (c, p) for a, b, c, p in t.pairs}
    assert len(pairs) == 3
    assert [p for _, p in pairs.values()] == pytest.approx(stats.benjamini_hochberg([c.p for c, _ in pairs.values()]))

    s31 = tables[("S3.1", "0.5")]
    # its violated and unfinished runs record no data copy: one table still, not one per "copy"
    assert [x.setup for x in built].count("S3.1") == 1 and s31.data_copy is None
    assert [c.row for c in s31.cells] == ["l1norm"]
    missing = {c.row: c.missing for c in s31.incomplete}
    assert missing["test-longer"][0].startswith("violated (S3.1: rule 'retrain epochs' broken: expected 2, got 3")
    assert missing["test-longer"][1] == "not run"
    assert missing["random"][0].startswith("incomplete (run")


def test_an_older_version_of_a_method_is_a_row_of_its_own_not_averaged(leaderboard_store, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(leaderboard_store, store)
    s = Store(store)
    (row,) = s.query("SELECT id FROM runs WHERE setup = 'S2' AND row = 'l1norm' AND seed = 1")
    spec = s.spec(row["id"])
    old = spec.model_copy(update={"method": spec.method.model_copy(update={"code": "0" * 64})})
    shutil.copytree(store / "runs" / spec.run_id, store / "runs" / old.run_id)
    (store / "runs" / old.run_id / "spec.json").write_text(old.model_dump_json())
    for f in (store / "runs" / old.run_id).iterdir():  # finished before the current code's runs
        os.utime(f, (1e9, 1e9))
    assert s.reindex() == len(list((store / "runs").iterdir()))
    (table,) = build(s, protocol="S2")
    cell = next(c for c in table.cells if c.row == "l1norm")
    assert not cell.superseded and cell.runs[1] == spec.run_id and len(cell.scores) == 3
    older = next(c for c in table.incomplete if c.row == "l1norm (older code 00000000)")
    assert older.runs == {1: old.run_id} and older.missing == {0: "not run", 2: "not run"}


def test_a_table_shows_the_result_of_a_run_it_leaves_out_for_a_later_one(leaderboard_store, tmp_path):
    """Two finished runs of one seed and version of a row (one trained again from another base):
    the table shows the latest and names the other with its accuracy, whichever is the latest, so
    that choosing which a table shows (a time a hand can set) hides no result."""
    store = tmp_path / "store"
    shutil.copytree(leaderboard_store, store)
    s = Store(store)
    (row,) = s.query("SELECT id, test_acc FROM runs WHERE setup = 'S2' AND row = 'l1norm' AND seed = 1")
    spec = s.spec(row["id"])
    again = spec.model_copy(update={"base": "0" * 64})
    shutil.copytree(store / "runs" / spec.run_id, store / "runs" / again.run_id)
    (store / "runs" / again.run_id / "spec.json").write_text(again.model_dump_json())
    metrics = json.loads((store / "runs" / again.run_id / "metrics.json").read_text())
    (store / "runs" / again.run_id / "metrics.json").write_text(json.dumps({**metrics, "test_acc": 12.34}))
    for when, (older, newer) in ((1e9, (again, spec)), (4e9, (spec, again))):
        for f in (store / "runs" / again.run_id).iterdir():
            os.utime(f, (when, when))
        s.reindex()
        (table,) = build(s, protocol="S2")
        cell = next(c for c in table.cells if c.row == "l1norm")
        assert cell.runs[1] == newer.run_id and cell.superseded == [older.run_id]
        acc = {spec.run_id: row["test_acc"], again.run_id: 12.34}
        assert report.superseded_line(table) == (
            "Superseded runs, left out (an earlier run of the same seed and method code; the latest is shown): "
            f"l1norm, seed 1: run {older.run_id[:8]}, {acc[older.run_id]:.2f}% "
            f"(shown: run {newer.run_id[:8]}, {acc[newer.run_id]:.2f}%).")


def test_report_files_name_the_runs_and_leave_out_what_is_missing(leaderboard_store, tmp_path, capsys):
    out = tmp_path / "reports"
    assert main(["report", "--store", str(leaderboard_store), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "index.html" in names and "synth-fast_S2.md" in names and "synth-fast_S3.1.md" in names
    figures = {f"synth-fast_S2_{name}.{ext}" for name in ("pareto", "accuracy_vs_target", "ta_vs_final", "0.5_curves")
               for ext in ("png", "svg")}
    assert figures | {"synth-fast_SX-B_0.5_curves.png", "synth-fast_SX-B_pareto.svg", "leaderboard.json"} <= set(names)
    # SX-B has one pruned row at one target: no TA figure, and the page says why
    assert "synth-fast_SX-B_ta_vs_final.png" not in names
    assert "No trainability-accuracy figure: 1 pruned row × target point" in (out / "synth-fast_SX-B.md").read_text()
    pngs = [p for p in out.iterdir() if p.suffix == ".png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs) and len(pngs) >= 10
    assert {p.with_suffix(".svg") for p in pngs} == {p for p in out.iterdir() if p.suffix == ".svg"}
    printed = set(capsys.readouterr().out.split())
    assert {str(p) for p in out.iterdir()} == printed  # every file written, both formats, listed
    md = (out / "synth-fast_S2.md").read_text()
    board = md.split("**Not in the leaderboard**")[0]
    for rid in Store(leaderboard_store).query("SELECT id FROM runs WHERE setup = 'S2' AND method != 'taylor'"):
        assert rid["id"][:8] in board
    # the heading spans the effective MACs of the ranked rows' runs (taylor lacks a seed: not ranked)
    macs = [r[0] for r in Store(leaderboard_store).query(
        "SELECT effective_macs FROM runs WHERE setup = 'S2' AND status = 'done' AND row != 'taylor'")]
    heading = f"## synth-fast under S2, target ratio 0.5 — achieved MACs {report._apart(min(macs), max(macs), report._si)}"
    assert heading in md
    assert "taylor" not in board.split(heading)[1]
    # SX-B: each row's pipeline cost beside the budget it was held to
    sxb = (out / "synth-fast_SX-B.md").read_text()
    for r in Store(leaderboard_store).query("SELECT * FROM runs WHERE setup = 'SX-B' AND seed = 0"):
        line = next(line for line in sxb.splitlines() if f"| {r['row']} " in line)
        assert f"{report._si(r['budget'])} FLOPs (used ≤ " in line and f" {report._si(r['total_train_flops'])}" in line
        assert r["budget_kind"] == "flops" and r["total_train_flops"] <= r["budget"] * 1.01
    assert "seed 2: not run" in md
    s31 = (out / "synth-fast_S3.1.md").read_text()
    assert "violated" in s31 and "incomplete" in s31
    html = (out / "index.html").read_text()
    assert "http://" not in html and "https://" not in html  # self-contained
    assert html.count("data:image/png;base64,") == len(pngs)


def test_report_errors_are_one_line(tmp_path, capsys, leaderboard_store):
    assert main(["report", "--store", str(tmp_path / "none")]) == 2
    assert main(["report", "--store", str(leaderboard_store), "--protocol", "S4.2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no run store at" in err and "no runs under 'S4.2'" in err and "S2, S3.1" in err
    assert "Traceback" not in err


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


PROBE = """<script>
window.addEventListener('load', () => {
  const visible = el => { const r = el.getBoundingClientRect(); const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== 'hidden' && s.display !== 'none'; };
  const table = document.querySelector('table.leaderboard');
  const img = document.querySelector('img.plot');
  const links = [...document.querySelectorAll('a[href^="#"]')];
  const imgs = [...document.querySelectorAll('img.plot')];
  const out = {table: !!table && visible(table), rows: table ? table.querySelectorAll('tbody tr').length : 0,
               img: !!img && visible(img) && img.complete && img.naturalWidth > 0,
               imgWidth: img ? img.naturalWidth : 0, links: links.length,
               broken: links.filter(a => !document.getElementById(a.getAttribute('href').slice(1))).length,
               imgs: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
               first: document.querySelector('h2').id || document.querySelector('h2').parentElement.id};
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script></body>"""


@pytest.mark.skipif(not chromium() and not os.environ.get("PRUNEBENCH_REQUIRE_BROWSER"),
                    reason="no chromium: apt-get install chromium (CI installs it)")
def test_html_report_renders_in_headless_chromium(leaderboard_store, tmp_path):
    assert chromium(), "PRUNEBENCH_REQUIRE_BROWSER is set but no chromium is installed (apt-get install chromium)"
    out = tmp_path / "reports"
    write_report(Store(leaderboard_store), out)
    page = out / "probe.html"
    page.write_text((out / "index.html").read_text().replace("</body>", PROBE))
    dom = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()], check=False,
        capture_output=True, text=True, timeout=120).stdout
    probe = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom).group(1).replace("&quot;", '"'))
    assert probe["table"] and probe["rows"] == 4  # dense + three complete S2 methods, first table
    assert probe["img"] and probe["imgWidth"] > 100
    assert probe["loaded"] == probe["imgs"] == len(list(out.glob("*.png")))  # every figure decoded
    assert probe["links"] > 0 and probe["broken"] == 0  # the contents and summary link to sections that exist
    assert probe["first"] == "summary"


def test_crossval_runs_four_pairings_and_names_the_verdict(fast_suite, store, capsys):
    h = harness(store, "S3.1")
    a, b = 'l1norm:retrain_lr="0:0.2,1:0.02"', "random"
    result = crossval(h, a, b, SEEDS)
    la = "l1norm(retrain_lr='0:0.2,1:0.02')"
    assert (result.a, result.b) == (la, "random")
    assert str(result.recipes[la].lr) != str(result.recipes["random"].lr)
    assert len(result.pairings) == 4
    ids = {rid for p in result.pairings.values() for rid in p.runs.values()}
    assert len(ids) == 4 * len(SEEDS)  # four pairings, every seed, no run shared
    s = Store(store)
    for (method, owner), p in result.pairings.items():
        for rid in p.runs.values():
            spec = s.spec(rid)
            retrain = dict(spec.phases)["retrain"]
            assert retrain == result.recipes[owner]  # trained with that owner's recipe
            assert spec.recipe_of == (None if method == owner else owner)
    # each duel: the two methods under one recipe, paired by seed, Holm over the two
    p = [sps.ttest_rel(list(result.pairings[(la, o)].scores.values()),
                       list(result.pairings[("random", o)].scores.values())).pvalue for o in (la, "random")]
    assert [d.p_adjusted for d in result.duels] == pytest.approx(stats.holm(p))
    verdict = result.verdict()
    # a second call trains nothing: every pairing is a cache hit
    again = crossval(harness(store, "S3.1"), a, b, SEEDS)
    assert {k: p.runs for k, p in again.pairings.items()} == {k: p.runs for k, p in result.pairings.items()}
    # the CLI prints the 2x2 table and the verdict (all cache hits now)
    assert main(["crossval", "--protocol", "S3.1", "--suite", "synth-fast", "--method", a, "--method", b,
                 "--seeds", "0", "1", "2", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert f"recipe of {la}: LR 0:0.2,1:0.02" in out and "recipe of random: LR 0:0.05,1:0.005" in out
    assert f"{result.pairings[(la, la)].summary.mean:.2f}" in out and f"verdict: {verdict}" in out
    assert verdict.startswith(("consistent winner", "pruning and retraining interact", "inconclusive"))
    # the borrowed-recipe rows appear in the leaderboard under their own names
    rows = {c.row for t in build(s, protocol="S3.1") for c in t.cells}
    assert f"l1norm with the recipe of {la}" not in rows  # its own retrain_lr did not train there
    assert "l1norm with the recipe of random" in rows and f"random with the recipe of {la}" in rows
    # no plain l1norm row (the default reference): the l1norm variant with its own recipe stands in, says so,
    # and every other row is tested against it
    (table,) = build(s, protocol="S3.1")
    assert "l1norm" not in rows and f"tested against {la!r} instead" in table.reference_note
    others = [c for c in table.cells if c.row != la]
    assert {c.reference for c in others} == {la} and all(c.comparison is not None for c in others)
    assert build(s, protocol="S3.1", reference="random")[0].reference_note == ""  # the user chose


def duel(owner, leader, p):
    comparison = stats.Comparison("paired t", 3, 1.0 if leader == "A" else -1.0, (0.1, 2.0), p, 1.0)
    return Duel(owner, comparison, p, leader)


def pairings(means):
    return {k: Pairing(k[0], k[1], {0: m, 1: m + 0.5, 2: m - 0.5}, {0: "r0", 1: "r1", 2: "r2"})
            for k, m in means.items()}


@pytest.mark.parametrize("leaders, ps, expected", [
    (("A", "A"), (0.01, 0.02), "consistent winner: A wins under both recipes"),
    (("A", "B"), (0.01, 0.02), ("pruning and retraining interact: the winner changes with the recipe; "
                               "the best pairing is B with the recipe of B (91.00%)")),
    (("A", "B"), (0.01, 0.30), ("inconclusive: no method wins significantly under both recipes (under the "
                               "recipe of A: A wins (p Holm = 0.01); under the recipe of B: B ahead, n.s. (p Holm = 0.3))")),
    (("A", "A"), (0.01, 0.05), "inconclusive"),  # 0.05 is not below 0.05
])
def test_crossval_verdict_counts_only_significant_wins(leaders, ps, expected):
    means = {("A", "A"): 90.0, ("B", "A"): 89.0, ("A", "B"): 88.0, ("B", "B"): 91.0}
    result = CrossVal("A", "B", {}, pairings(means), (duel("A", leaders[0], ps[0]), duel("B", leaders[1], ps[1])))
    assert result.verdict().startswith(expected)


def test_crossval_without_tests_is_inconclusive():
    untested = stats.Comparison(None, 2, 0.5, None, None, 1.0, "n = 2 < 3 paired seeds: no test")
    result = CrossVal("A", "B", {}, pairings({("A", "A"): 90.0, ("B", "A"): 89.0, ("A", "B"): 88.0, ("B", "B"): 87.0}),
                      (Duel("A", untested, None, "A"), Duel("B", untested, None, "A")))
    assert not result.consistent and not result.interact
    assert "A ahead, not tested (n = 2 < 3 paired seeds: no test)" in result.verdict()


def test_crossval_refuses_what_it_cannot_cross_validate(fast_suite, store, capsys):
    with pytest.raises(UserError, match="S3.2 fixes the retraining LR schedule"):
        crossval(harness(store, "S3.2"), "l1norm:retrain_lr=0.2", "random", SEEDS)
    with pytest.raises(UserError, match="retrain with the same recipe"):
        crossval(harness(store, "S3.1"), "l1norm", "random", SEEDS)
    assert main(["crossval", "--protocol", "S3.1", "--suite", "synth-fast", "--method", "l1norm",
                 "--store", str(store)]) == 2
    assert "exactly two methods" in capsys.readouterr().err
    assert not (store / "runs").exists() or not any((store / "runs").iterdir())  # nothing trained


def test_retrain_lr_is_refused_up_front_where_the_setup_fixes_it(fast_suite, store):
    with pytest.raises(UserError, match="S3.2 fixes the retraining LR schedule"):
        harness(store, "S3.2").plan(["l1norm:retrain_lr=0.2"], seeds=[0])
    planned = harness(store, "S2").plan(['l1norm:retrain_lr="0:0.2,1:0.02"'], seeds=[0])
    pruned = next(p for p in planned if p.spec.kind == "pruned")
    assert dict(pruned.spec.phases)["retrain"].lr.stages == [(0, 0.2), (1, 0.02)]
    assert pruned.row == "l1norm(retrain_lr='0:0.2,1:0.02')"


def test_own_retrain_lr_still_fits_an_own_pruning_phase_into_the_sx_budget(fast_suite, store):
    planned = harness(store, "SX-A").plan(["greg:retrain_lr=0.2"], seeds=[0])
    pruned = next(p for p in planned if p.spec.kind == "pruned")
    phases = dict(pruned.spec.phases)
    assert phases["prune"].epochs + phases["retrain"].epochs == FAST["epochs"]  # K2 shared with the phase
    assert phases["retrain"].lr.stages == [(0, 0.2)]
    scratch = next(p for p in planned if p.spec.kind == "scratch")
    assert scratch.row == "Scratch-E of greg"  # scratch training takes no finetuning LR: one baseline


def test_a_speedup_target_gets_its_own_table_after_the_ratios_and_a_panel_of_its_own(fast_suite, store, tmp_path):
    h = harness(store, "S2")
    h.run(["l1norm", "magnitude"], seeds=SEEDS)
    h.run(["l1norm", "magnitude"], seeds=SEEDS, speedup=2.0)
    s = Store(store)
    tables = build(s, protocol="S2")
    assert [t.target for t in tables] == ["0.5", "2x"]
    t = tables[1]
    runs = [dict(r) for r in s.query("SELECT * FROM runs WHERE target = '2x' AND status = 'done'")]
    assert len(runs) == 6 and {r["speedup"] for r in runs} == {2.0} and all(r["knob"] is not None for r in runs)
    macs = [r["effective_macs"] for r in runs]
    assert report.macs_range(t) == (min(macs), max(macs))
    assert report.to_json(tables)[1]["achieved_macs"] == [min(macs), max(macs)]
    dense = t.dense.macs
    speedups = report._apart(dense / max(macs), dense / min(macs), lambda v, d: f"{v:.{d - 1}f}x")
    assert report.target_heading(t) == (
        f"target 2x speedup — achieved MACs {report._apart(min(macs), max(macs), report._si)} ({speedups})")
    for c in t.cells:  # the ratio the search found, beside the speedup measured
        assert c.knob == {r["seed"]: r["knob"] for r in runs if r["row"] == c.row}
        assert f"(ratio {report._span(c.knob.values(), lambda v: f'{v:.3g}')})" in report._row("1", c)[16]
    series = report.pareto_series(tables)  # each method through both targets, by MACs
    assert [p.target for p in series["l1norm"]] == sorted(["0.5", "2x"], key=lambda x: next(
        c.effective_macs for tt in tables if tt.target == x for c in tt.cells if c.row == "l1norm"))
    written = write_report(s, tmp_path / "out", protocol="S2")
    assert tmp_path / "out" / "synth-fast_S2_accuracy_vs_target.svg" in written
    fig = report.target_figure(tables)
    assert [a.get_xlabel() for a in fig.axes] == [report.AXES["ratio"], report.AXES["speedup"]]
    md = (tmp_path / "out" / "synth-fast_S2.md").read_text()
    assert md.index("target ratio 0.5 — achieved") < md.index("target 2x speedup — achieved")
