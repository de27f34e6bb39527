"""Run records (`bench export`): a leaderboard trained in parts, in stores that are then lost,
reports from the records exactly as from one store that trained it all, keeps its verified marks
while the records are unchanged, never takes a second result under one run id, and cannot be
trained in or verified."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from prunebench.cli import main
from prunebench.protocol_files import load_protocol
from prunebench.runner import Harness


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One store that trained S2 (l1norm, magnitude, magnitude in 2 rounds: round masks) and SX-B
    (l1norm, magnitude) for seeds 0 and 1, verified."""
    root = tmp_path_factory.mktemp("records")
    from tests.conftest import synth_protocols

    mp = synth_protocols(root)
    store = root / "store"
    for setup, methods in (("S2", ["l1norm", "magnitude", "magnitude:rounds=2"]), ("SX-B", ["l1norm", "magnitude"])):
        protocol, _, sha = load_protocol(setup, "synth-small")
        h = Harness(protocol, store=store, protocol_sha256=sha, device="cpu", progress=False, log=lambda m: None)
        list(h.run(methods, seeds=[0, 1]))
    assert list(store.glob("runs/*/rounds/1/masks.pt"))  # what a record must stand for without the file
    assert main(["verify", "--store", str(store)]) == 0
    yield store
    mp.undo()


def seed_of(run_dir: Path) -> int:
    return json.loads((run_dir / "spec.json").read_text())["seed"]


def part(store: Path, seed: int, to: Path) -> Path:
    """The store of a session that trained one seed: a copy holding that seed's runs only."""
    shutil.copytree(store, to)
    for run in (to / "runs").iterdir():
        if seed_of(run) != seed:
            shutil.rmtree(run)
    return to


def s2_recorded(store: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Seed 0's part recorded without its SX-B runs (its S2 runs, base included): the records
    and the part's store."""
    records, s2 = tmp_path / "records", part(store, 0, tmp_path / "s2")
    for run in (s2 / "runs").iterdir():
        if (json.loads((run / "spec.json").read_text()).get("protocol") or "").endswith("/SX-B"):
            shutil.rmtree(run)
    assert main(["export", "--store", str(s2), "--out", str(records)]) == 0
    return records, s2


def report(store: Path, out: Path, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["report", "--store", str(store), "--out", str(out), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def cells(tables: list[dict]) -> dict:
    return {(t["setup"], t["target"], c["row"]): c for t in tables for c in t["cells"]}


def test_records_of_two_parts_report_as_the_store_that_trained_both(trained, tmp_path, capsys):
    records = tmp_path / "records"
    for seed in (0, 1):
        assert main(["export", "--store", str(part(trained, seed, tmp_path / f"part{seed}")), "--out", str(records)]) == 0
        assert "runs recorded in" in capsys.readouterr().out
    whole, merged = cells(report(trained, tmp_path / "r-store", capsys)), cells(report(records, tmp_path / "r-rec", capsys))
    assert merged.keys() == whole.keys() and len(whole) == 7  # S2: 3 rows; SX-B: l1norm, magnitude + 2 Scratch-B
    for key, cell in whole.items():
        assert cell["n"] == 2 and cell["verified"] == "yes"
        assert merged[key] == cell  # numbers, tests, run ids and verified marks alike
    # no weights in the records; each record keeps its weights' sha256, the one the loop recorded
    runs = sorted((records / "runs").iterdir())
    assert len(runs) == len(list((trained / "runs").iterdir())) == 2 * 8
    assert not list(records.rglob("*.pt")) and not list(records.rglob("lock"))
    for run in runs:
        record = json.loads((run / "record.json").read_text())
        assert record["weights"]["model.pt"] == json.loads((run / "metrics.json").read_text())["model_sha256"]
        assert record["verification"]["ok"] is True
        assert set(record["weights"]) == {str(p.relative_to(trained / "runs" / run.name))
                                          for p in (trained / "runs" / run.name).rglob("*.pt")}
    exports = json.loads((records / "records.json").read_text())["exports"]
    assert [(e["added"], e["verified"]) for e in exports] == [(8, 8), (8, 8)]
    # the time each run last changed in its store, not the export's or a clone's file times
    from prunebench.store import Store

    for run in runs:
        os.utime(run / "metrics.json", (2e9, 2e9))  # a clone's file times
    recorded = {r["id"]: r["updated"] for r in Store(records).query("SELECT id, updated FROM runs")}
    assert recorded == {r["id"]: r["updated"] for r in Store(trained).query("SELECT id, updated FROM runs")}
    assert "Reported from run records" in (tmp_path / "r-rec" / "synth-small_S2.md").read_text()
    assert "Reported from run records" not in (tmp_path / "r-store" / "synth-small_S2.md").read_text()
    assert "Reported from run records" in (tmp_path / "r-rec" / "index.html").read_text()
    assert "Reported from run records" not in (tmp_path / "r-store" / "index.html").read_text()


def test_exporting_again_adds_nothing_and_a_different_result_under_one_id_is_refused(trained, tmp_path, capsys):
    records = tmp_path / "records"
    assert main(["export", "--store", str(trained), "--out", str(records)]) == 0
    before = {p: p.read_bytes() for p in (records / "runs").rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["export", "--store", str(trained), "--out", str(records)]) == 0
    out = capsys.readouterr().out
    assert "0 runs recorded" in out and "16 were already there" in out
    assert {p: p.read_bytes() for p in (records / "runs").rglob("*") if p.is_file()} == before
    # the same run trained again elsewhere, with another result (another CPU, say): one id, one result
    other = part(trained, 0, tmp_path / "other")
    run = next(r for r in (other / "runs").iterdir() if json.loads((r / "spec.json").read_text())["kind"] == "pruned")
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "test_acc": metrics["test_acc"] + 0.01}))
    capsys.readouterr()
    assert main(["export", "--store", str(other), "--out", str(records)]) == 2
    err = capsys.readouterr().err
    assert f"run {run.name[:12]} is already recorded" in err and "metrics.json" in err and "Traceback" not in err
    assert (records / "runs" / run.name / "metrics.json").read_bytes() == before[records / "runs" / run.name /
                                                                                 "metrics.json"]


@pytest.mark.parametrize("edit", ["metrics", "plan", "weights sha256", "weights not hex", "trace gone, listed as "
                                  "weights", "verdict without ok", "record unreadable"])
def test_an_edited_record_is_no_longer_verified(trained, tmp_path, capsys, edit):
    records = tmp_path / "records"
    assert main(["export", "--store", str(trained), "--out", str(records)]) == 0
    ids = {(t["setup"], t["target"], c["row"]): c["runs"] for t in report(records, tmp_path / "r0", capsys)
           for c in t["cells"]}
    run = records / "runs" / next(iter(ids[("S2", "0.5", "l1norm")].values()))
    record = json.loads((run / "record.json").read_text())
    if edit == "metrics":  # the number a table shows
        metrics = json.loads((run / "metrics.json").read_text())
        (run / "metrics.json").write_text(json.dumps({**metrics, "test_acc": 99.0}))
    elif edit == "plan":
        (run / "plan.json").write_text((run / "plan.json").read_text().replace("1", "2", 1))
    elif edit == "weights sha256":  # a record claiming other weights than those verified
        record["weights"]["model.pt"] = "0" * 64
        (run / "record.json").write_text(json.dumps(record))
    elif edit == "weights not hex":
        record["weights"]["model.pt"] = "not a sha256"
        (run / "record.json").write_text(json.dumps(record))
    elif edit.startswith("trace gone"):  # only weights may stand for a missing file
        from prunebench._atomic import sha256_file

        record["weights"]["trace.json"] = sha256_file(run / "trace.json")
        (run / "trace.json").unlink()
        (run / "record.json").write_text(json.dumps(record))
    elif edit == "verdict without ok":
        del record["verification"]["ok"]
        (run / "record.json").write_text(json.dumps(record))
    else:
        (run / "record.json").write_text("{not json")
    marks = {c["row"]: c["verified"] for (setup, _, _), c in cells(report(records, tmp_path / "r1", capsys)).items()
             if setup == "S2"}
    assert marks == {"l1norm": "no", "magnitude": "yes", "magnitude(rounds=2)": "yes"}


def test_records_cannot_be_trained_in_or_verified(trained, tmp_path, capsys, monkeypatch):
    records = tmp_path / "records"
    assert main(["export", "--store", str(trained), "--out", str(records)]) == 0
    capsys.readouterr()
    for argv in (["run", "--protocol", "S2", "--suite", "synth-small", "--method", "l1norm", "--seeds", "0"],
                 ["verify"], ["report", "--verify", "--out", str(tmp_path / "r")]):
        assert main([*argv, "--store", str(records)]) == 2, argv
        err = capsys.readouterr().err
        assert "holds run records exported by `bench export` (no weights)" in err and "Traceback" not in err
    assert not list(records.rglob("*.pt")) and not (records / "index.db").exists()


def test_named_runs_alone_are_exported_so_a_lost_scratch_baseline_can_be_trained_elsewhere(trained, tmp_path, capsys):
    """A part recorded without its scratch baselines (the session ran out); a later session, on a
    CPU whose arithmetic differs, trains the base and pruned runs again to get to the baselines:
    exporting it all is refused (their ids hold other results), exporting the baselines by id adds
    them, and the report is the one of the part exported whole."""
    kind = lambda r: json.loads((r / "spec.json").read_text())["kind"]  # noqa: E731
    records, lost = tmp_path / "records", part(trained, 0, tmp_path / "lost")
    scratch = sorted(r.name for r in (lost / "runs").iterdir() if kind(r) == "scratch")
    assert len(scratch) == 2
    for name in scratch:
        shutil.rmtree(lost / "runs" / name)
    assert main(["export", "--store", str(lost), "--out", str(records)]) == 0
    later = part(trained, 0, tmp_path / "later")
    for run in (later / "runs").iterdir():
        if kind(run) != "scratch":  # trained again elsewhere: other results under the same ids
            metrics = json.loads((run / "metrics.json").read_text())
            (run / "metrics.json").write_text(json.dumps({**metrics, "test_acc": metrics["test_acc"] + 0.01}))
    capsys.readouterr()
    assert main(["export", "--store", str(later), "--out", str(records)]) == 2
    assert "with a different result" in capsys.readouterr().err
    assert main(["export", "--store", str(later), "--out", str(records), *(n[:10] for n in scratch)]) == 0
    assert "2 runs recorded" in capsys.readouterr().out
    assert sorted(p.name for p in (records / "runs").iterdir()) == sorted(p.name for p in (later / "runs").iterdir())
    assert main(["export", "--store", str(part(trained, 0, tmp_path / "whole")), "--out", str(tmp_path / "ref")]) == 0
    whole = cells(report(tmp_path / "ref", tmp_path / "r1", capsys))
    assert cells(report(records, tmp_path / "r2", capsys)) == whole and len(whole) == 7
    assert all(c["verified"] == "yes" and c["n"] == 1 for c in whole.values())
    # named runs must be runs of the store, finished, and of --suite when it is given
    run = next(r for r in (later / "runs").iterdir() if kind(r) == "scratch")
    for args, said in (([run.name[:12], "--suite", "other"], "not --suite other"), (["ffff"], "starts with 'ffff'"),
                       ([""], "starts with ''")):
        assert main(["export", "--store", str(later), "--out", str(tmp_path / "named"), *args]) == 2
        assert said in (err := capsys.readouterr().err) and "Traceback" not in err
    (run / "metrics.json").unlink()
    assert main(["export", "--store", str(later), "--out", str(tmp_path / "named"), run.name]) == 2
    assert "has not finished" in capsys.readouterr().err
    assert not (tmp_path / "named" / "runs" / run.name).exists()


def test_a_computation_is_recorded_with_one_result_whichever_run_id_brings_it(trained, tmp_path, capsys):
    """S2 and SX-B share the l1norm pruned run's computation (trained once, two run ids). A later
    part that trained the SX-B membership again (its S2 run recorded, its SX-B run not) adds it
    when it came to the recorded weights, and is refused, adding nothing of it, when it did not
    (another CPU): one computation, one result, in every table it appears in."""
    spec = lambda r: json.loads((r / "spec.json").read_text())  # noqa: E731
    metrics = lambda r: json.loads((r / "metrics.json").read_text())  # noqa: E731
    setup = lambda r: (spec(r).get("protocol") or "").split("/")[-1]  # noqa: E731
    records, s2 = s2_recorded(trained, tmp_path)
    shared = {metrics(r)["computation"]["id"]: r.name for r in (s2 / "runs").iterdir() if spec(r)["kind"] == "pruned"}
    later = part(trained, 0, tmp_path / "later")
    sxb = [r for r in (later / "runs").iterdir() if setup(r) == "SX-B" and spec(r)["kind"] == "pruned"]
    assert len(sxb) == 2 and {metrics(r)["computation"]["id"] for r in sxb} <= shared.keys()
    victim, kept = sxb
    m = metrics(victim)  # retrained where the arithmetic differs: other weights, another accuracy
    other = {**m, "model_sha256": "f" * 64, "test_acc": m["test_acc"] - 0.5,
             "machine": {**m["machine"], "cpu": "Other CPU"}}
    (victim / "metrics.json").write_text(json.dumps(other))
    capsys.readouterr()
    assert main(["export", "--store", str(later), "--out", str(records), victim.name]) == 2
    err = capsys.readouterr().err
    assert f"run {victim.name[:12]} is the same computation" in err and shared[m["computation"]["id"]][:12] in err
    assert "Other CPU" in err and str(m["test_acc"] - 0.5) in err and "Traceback" not in err
    assert not (records / "runs" / victim.name).exists()
    # its computation record stripped, or rewritten to another computation: its files still say which it is
    stripped = {k: v for k, v in other.items() if k != "computation"}
    rewritten = {**other, "computation": {**m["computation"], "id": "0" * 64,
                                          "content": {**m["computation"]["content"], "seed": 7}}}
    for edited in (stripped, rewritten):
        (victim / "metrics.json").write_text(json.dumps(edited))
        assert main(["export", "--store", str(later), "--out", str(records), victim.name]) == 2
        assert f"run {victim.name[:12]} is the same computation" in capsys.readouterr().err
    assert not (records / "runs" / victim.name).exists()
    # the same run of the other computation, trained to the recorded weights: its membership is added
    assert main(["export", "--store", str(later), "--out", str(records), kept.name]) == 0
    assert (records / "runs" / kept.name).is_dir()
    # the same weights with another accuracy (other test data, or an edited number) is another result
    (victim / "metrics.json").write_text(json.dumps({**m, "test_acc": m["test_acc"] + 0.01}))
    assert main(["export", "--store", str(later), "--out", str(records), victim.name]) == 2
    assert "with another result" in capsys.readouterr().err
    (victim / "metrics.json").write_text(json.dumps(m))
    assert main(["export", "--store", str(later), "--out", str(records), victim.name]) == 0
    rows = {(t["setup"], c["row"]) for t in report(records, tmp_path / "r", capsys) for c in t["cells"]}
    assert {("SX-B", "l1norm"), ("SX-B", "magnitude"), ("S2", "l1norm")} <= rows
    # within one export too: a store whose two runs of one computation hold two results
    fresh, twice = tmp_path / "fresh", part(trained, 1, tmp_path / "twice")
    run = next(r for r in (twice / "runs").iterdir() if setup(r) == "SX-B" and spec(r)["kind"] == "pruned")
    (run / "metrics.json").write_text(json.dumps({**metrics(run), "model_sha256": "e" * 64}))
    assert main(["export", "--store", str(twice), "--out", str(fresh)]) == 2
    assert "is the same computation" in (err := capsys.readouterr().err) and "Traceback" not in err
    assert len([r for r in (fresh / "runs").iterdir()
                if metrics(r)["computation"]["id"] == metrics(run)["computation"]["id"]]) == 1


def test_a_table_says_when_one_computation_holds_two_results(trained, tmp_path, capsys):
    """Run folders copied by hand from parts that disagree bypass `bench export`: the tables of
    both memberships of the computation say it holds two results, naming the runs; records of one
    consistent export say nothing of the kind."""
    records = tmp_path / "records"
    assert main(["export", "--store", str(trained), "--out", str(records)]) == 0
    clean = report(records, tmp_path / "r0", capsys)
    assert all(t["disagree"] == [] for t in clean) and any(t["shared"] for t in clean)
    sxb = next(c for t in clean for c in t["cells"] if t["setup"] == "SX-B" and c["row"] == "l1norm")
    s2 = next(c for t in clean for c in t["cells"] if t["setup"] == "S2" and c["row"] == "l1norm")
    run = records / "runs" / sxb["runs"]["0"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["computation"]["trained_in"] == s2["runs"]["0"]
    (run / "metrics.json").write_text(json.dumps({**metrics, "test_acc": metrics["test_acc"] + 0.5}))
    tables = {t["setup"]: t for t in report(records, tmp_path / "r1", capsys)}
    (run / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != "computation"}
                                                 | {"test_acc": metrics["test_acc"] + 0.5}))
    stripped = {t["setup"]: t["disagree"] for t in report(records, tmp_path / "r3", capsys)}
    assert stripped == {setup: t["disagree"] for setup, t in tables.items()}  # its files still tell its computation
    said = tables["SX-B"]["disagree"]
    assert len(said) == 1 and said[0].startswith(f"l1norm, seed 0: run {run.name[:8]} holds")
    assert f"run {s2['runs']['0'][:8]} (l1norm, S2) {metrics['test_acc']}%" in said[0]
    assert len(tables["S2"]["disagree"]) == 1 and run.name[:8] in tables["S2"]["disagree"][0]
    assert "One computation, more than one result" in (tmp_path / "r1" / "synth-small_SX-B.md").read_text()
    assert 'class="warning">One computation, more than one result' in (tmp_path / "r1" / "index.html").read_text()
    assert "One computation" not in (tmp_path / "r0" / "index.html").read_text()
    # a table shown alone still sees the computation's run under the setup left out
    capsys.readouterr()
    assert main(["report", "--store", str(records), "--out", str(tmp_path / "r2"), "--protocol", "S2", "--json"]) == 0
    assert [t["disagree"] for t in json.loads(capsys.readouterr().out)] == [tables["S2"]["disagree"]]


def test_export_refuses_what_is_not_a_store_or_not_records(trained, tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    assert main(["export", "--store", str(trained), "--out", str(tmp_path / "notes")]) == 2
    assert "is not a folder of run records" in capsys.readouterr().err
    assert main(["export", "--store", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert "no run store at" in capsys.readouterr().err and not (tmp_path / "r").exists()
    assert main(["report", "--store", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2


def test_unfinished_runs_are_left_out_and_said(trained, tmp_path, capsys):
    store = part(trained, 0, tmp_path / "part")
    run = next(r for r in (store / "runs").iterdir() if json.loads((r / "spec.json").read_text())["kind"] == "scratch")
    (run / "metrics.json").unlink()  # killed before it finished
    capsys.readouterr()
    assert main(["export", "--store", str(store), "--out", str(tmp_path / "records"), "--suite", "synth-small"]) == 0
    assert "7 runs recorded" in (out := capsys.readouterr().out) and "1 unfinished runs left out" in out
    assert not (tmp_path / "records" / "runs" / run.name).exists()
    assert main(["export", "--store", str(store), "--out", str(tmp_path / "none"), "--suite", "other"]) == 0
    assert "0 runs recorded" in capsys.readouterr().out


def test_a_run_recorded_failed_then_finished_is_named_and_a_stopped_export_is_logged(trained, tmp_path, capsys):
    records = tmp_path / "records"
    early = part(trained, 0, tmp_path / "early")  # a session where one run had failed
    run = next(r for r in (early / "runs").iterdir() if json.loads((r / "spec.json").read_text())["kind"] == "pruned")
    (run / "metrics.json").unlink()
    (run / "failed.json").write_text(json.dumps({"reason": "loss became NaN", "when": 0}))
    assert main(["export", "--store", str(early), "--out", str(records)]) == 0
    capsys.readouterr()
    assert main(["export", "--store", str(trained), "--out", str(records)]) == 2  # retried and finished since
    err = capsys.readouterr().err
    assert f"run {run.name[:12]} is recorded in" in err and "as failed.json" in err and "delete" in err
    exports = json.loads((records / "records.json").read_text())["exports"]
    assert len(exports) == 2 and exports[1]["added"] > 0  # what the stopped export added is traceable to it
    sources = [json.loads((r / "record.json").read_text())["exported"]["from"] for r in (records / "runs").iterdir()]
    assert sources.count(exports[1]["from"]) == exports[1]["added"] and exports[1]["from"] == str(trained.resolve())
    assert sources.count(exports[0]["from"]) == exports[0]["added"]


def test_a_killed_export_leaves_records_that_report_and_export_again(trained, tmp_path, capsys, recwarn):
    records = tmp_path / "records"
    assert main(["export", "--store", str(trained), "--out", str(records)]) == 0
    victim = next((records / "runs").iterdir())
    shutil.move(victim, records / "runs" / f".{victim.name[:12]}-half")  # killed while copying this run
    capsys.readouterr()
    assert main(["report", "--store", str(records), "--out", str(tmp_path / "r"), "--json"]) == 0
    assert not [w for w in recwarn if "not indexing" in str(w.message)]
    assert main(["export", "--store", str(trained), "--out", str(records)]) == 0
    assert "1 runs recorded" in capsys.readouterr().out
    assert sorted(p.name for p in (records / "runs").iterdir()) == sorted(p.name for p in (trained / "runs").iterdir())


def test_a_newer_verdict_replaces_an_older_one_and_not_the_reverse(trained, tmp_path, capsys):
    older = tmp_path / "older"
    shutil.copytree(trained, older)
    newer = tmp_path / "newer"
    shutil.copytree(trained, newer)
    run = next(iter(sorted(p.name for p in (newer / "runs").iterdir())))
    assert main(["verify", run, "--store", str(newer)]) == 0  # verified again, later
    records = tmp_path / "records"
    for store in (older, newer, older):
        assert main(["export", "--store", str(store), "--out", str(records)]) == 0
    checked = json.loads((records / "runs" / run / "record.json").read_text())["verification"]["checked"]
    from prunebench.store import Store

    assert checked == Store(newer).verifications()[run]["checked"] > Store(older).verifications()[run]["checked"]


def test_nothing_trains_into_records_even_through_the_api(trained, tmp_path, capsys, monkeypatch):
    from tests.conftest import LADDER, SUITE, write_yaml

    records = tmp_path / "records"
    assert main(["export", "--store", str(trained), "--out", str(records)]) == 0
    capsys.readouterr()
    assert main(["crossval", "--protocol", "S2", "--suite", "synth-small", "--method", "l1norm", "--method", "random",
                 "--seeds", "0", "--store", str(records)]) == 2
    assert "`bench crossval` needs a run store" in capsys.readouterr().err
    protocols = tmp_path / "protocols"
    write_yaml(protocols / "synth-small" / "suite.yaml", SUITE)
    write_yaml(protocols / "synth-small" / "S2.yaml", LADDER["S2"])
    monkeypatch.setenv("PRUNEBENCH_PROTOCOLS", str(protocols))
    protocol, _, sha = load_protocol("S2", "synth-small")
    h = Harness(protocol, store=records, protocol_sha256=sha, device="cpu", progress=False, log=lambda m: None)
    from prunebench.errors import UserError

    with pytest.raises(UserError, match="holds run records"):
        list(h.run(["random"], seeds=[0]))
    assert not list(records.rglob("*.pt")) and not list(records.rglob("checkpoint*"))


def test_a_pruned_run_is_recorded_only_beside_the_base_it_started_from(trained, tmp_path, capsys):
    """A later part that trained a seed's base again, on a CPU whose arithmetic differs, prunes other
    weights: another plan, so another computation, which the one-result rule does not see. Its pruned
    run is refused beside the recorded base (its scratch baseline, which trains the architecture, is
    added), a base is refused beside recorded pruned runs that started from other weights, and so is
    a store holding both; nothing of them is added."""
    spec = lambda r: json.loads((r / "spec.json").read_text())  # noqa: E731
    metrics = lambda r: json.loads((r / "metrics.json").read_text())  # noqa: E731
    setup = lambda r: (spec(r).get("protocol") or "").split("/")[-1]  # noqa: E731
    records, s2 = s2_recorded(trained, tmp_path)
    later = part(trained, 0, tmp_path / "later")
    base = next(r for r in (later / "runs").iterdir() if spec(r)["kind"] == "base")
    sxb = next(r for r in (later / "runs").iterdir() if setup(r) == "SX-B" and spec(r)["kind"] == "pruned")
    m = metrics(sxb)
    pinned = {"base": base.name, "model_sha256": metrics(base)["model_sha256"]}
    assert json.loads((sxb / "base.json").read_text()) == pinned
    (sxb / "base.json").write_text(json.dumps({"base": base.name, "model_sha256": "a" * 64}))
    (sxb / "metrics.json").write_text(json.dumps({**m, "computation": {**m["computation"], "id": "c" * 64},
                                                  "machine": {**m["machine"], "cpu": "Other CPU"}}))
    capsys.readouterr()
    assert main(["export", "--store", str(later), "--out", str(records), sxb.name]) == 2
    err = capsys.readouterr().err
    assert f"run {sxb.name[:12]} started from base weights aaaaaaaaaaaa" in err and base.name[:12] in err
    assert "Other CPU" in err and "Traceback" not in err and not (records / "runs" / sxb.name).exists()
    scratch = [r.name for r in (later / "runs").iterdir() if spec(r)["kind"] == "scratch"]
    assert len(scratch) == 2 and main(["export", "--store", str(later), "--out", str(records), *scratch]) == 0
    # copied in by hand, past the export: its table says so
    shutil.copytree(sxb, records / "runs" / sxb.name)
    tables = {t["setup"]: t for t in report(records, tmp_path / "r", capsys)}
    said = [line for line in tables["SX-B"]["disagree"] if "started from" in line]
    assert len(said) == 1 and base.name[:8] in said[0] and not tables["S2"]["disagree"]
    assert said[0].startswith(f"{spec(sxb)['method']['name']}, seed 0: run {sxb.name[:8]} started from base weights aaaaaaaaaaaa")
    shutil.rmtree(records / "runs" / sxb.name)
    # the other way round: pruned runs recorded without their base, then a pruned run of that base
    # with other weights, and a base of other weights
    alone, pruned = tmp_path / "alone", [r.name for r in (s2 / "runs").iterdir() if spec(r)["kind"] == "pruned"]
    assert main(["export", "--store", str(s2), "--out", str(alone), *pruned]) == 0
    retrained = part(trained, 0, tmp_path / "retrained")
    other = next(r for r in (retrained / "runs").iterdir() if setup(r) == "SX-B" and spec(r)["kind"] == "pruned")
    (other / "base.json").write_text(json.dumps({"base": base.name, "model_sha256": "b" * 64}))
    assert main(["export", "--store", str(retrained), "--out", str(alone), other.name]) == 2
    err = capsys.readouterr().err
    assert f"started from one base, run {base.name[:12]} (not recorded), with other weights: bbbbbbbbbbbb" in err
    assert not (alone / "runs" / other.name).exists() and "Traceback" not in err
    shutil.copytree(other, alone / "runs" / other.name)  # copied in by hand: its table says so
    said = " ".join(line for t in report(alone, tmp_path / "r-alone", capsys) for line in t["disagree"])
    assert f"run {other.name[:8]} started from base weights bbbbbbbbbbbb… of base run {base.name[:8]} (not here)" in said
    shutil.rmtree(alone / "runs" / other.name)
    mine = retrained / "runs" / base.name
    (mine / "metrics.json").write_text(json.dumps({**metrics(mine), "model_sha256": "b" * 64}))
    assert main(["export", "--store", str(retrained), "--out", str(alone), base.name]) == 2
    assert f"its base, run {base.name[:12]}, holds weights bbbbbbbbbbbb" in (err := capsys.readouterr().err)
    assert "Traceback" not in err
    assert not (alone / "runs" / base.name).exists()
    assert main(["export", "--store", str(s2), "--out", str(alone), base.name]) == 0
    # one store holding both: nothing of the export is added
    twice, fresh = part(trained, 1, tmp_path / "twice"), tmp_path / "fresh"
    run = next(r for r in (twice / "runs").iterdir() if spec(r)["kind"] == "pruned")
    pin = json.loads((run / "base.json").read_text())
    (run / "base.json").write_text(json.dumps({**pin, "model_sha256": "d" * 64}))
    assert main(["export", "--store", str(twice), "--out", str(fresh)]) == 2
    assert "started from base weights dddddddddddd" in (err := capsys.readouterr().err) and "Traceback" not in err
    assert not list((fresh / "runs").iterdir())


def test_a_scratch_baseline_is_recorded_only_with_the_architecture_its_pruned_run_was_pruned_to(trained, tmp_path,
                                                                                                capsys):
    """A later part that trained a baseline from a base trained again elsewhere trains the plan the
    method made on other weights. Where that plan's widths (or masks) differ from the recorded pruned
    run's, the baseline is refused; one of the same architecture (masks checked by the digest the
    pruned run's computation records, its masks.pt left out of the records) is added; copied in by
    hand, both rows' table says so."""
    spec = lambda r: json.loads((r / "spec.json").read_text())  # noqa: E731
    records, lost = tmp_path / "records", part(trained, 0, tmp_path / "lost")
    scratch = {spec(r)["method"]["name"]: r.name for r in (lost / "runs").iterdir() if spec(r)["kind"] == "scratch"}
    assert sorted(scratch) == ["l1norm", "magnitude"]
    for name in scratch.values():
        shutil.rmtree(lost / "runs" / name)
    assert main(["export", "--store", str(lost), "--out", str(records)]) == 0
    later = part(trained, 0, tmp_path / "later")
    run = later / "runs" / scratch["l1norm"]
    widths = spec(run)["widths"]
    first = sorted(widths)[0]
    (run / "spec.json").write_text(json.dumps({**spec(run), "widths": {**widths, first: widths[first] - 1}}))
    capsys.readouterr()
    assert main(["export", "--store", str(later), "--out", str(records), run.name]) == 2
    err = capsys.readouterr().err
    assert f"scratch baseline {run.name[:12]} trains another architecture than run" in err and "Traceback" not in err
    assert not (records / "runs" / run.name).exists()
    assert main(["export", "--store", str(later), "--out", str(records), scratch["magnitude"]]) == 0
    # the baseline as trained, then its pruned run's plan edited in the records by hand
    assert main(["export", "--store", str(part(trained, 0, tmp_path / "as-trained")), "--out", str(records),
                 scratch["l1norm"]]) == 0
    sxb = next(t for t in report(records, tmp_path / "r0", capsys) if t["setup"] == "SX-B")
    assert sxb["disagree"] == [] and len(sxb["cells"]) == 4
    pruned = next(r for r in (records / "runs").iterdir() if spec(r)["kind"] == "pruned"
                  and spec(r)["method"]["name"] == "l1norm" and spec(r)["protocol"].endswith("SX-B"))
    plan = json.loads((pruned / "plan.json").read_text())
    (pruned / "plan.json").write_text(json.dumps({**plan, first: plan[first][:-1]}))
    sxb = next(t for t in report(records, tmp_path / "r1", capsys) if t["setup"] == "SX-B")
    said = " ".join(sxb["disagree"])
    assert f"run {run.name[:8]} is a scratch baseline of another architecture than its pruned run {pruned.name[:8]}" \
        in said
    assert f"run {pruned.name[:8]} was pruned to another architecture than its scratch baseline, run {run.name[:8]}" \
        in said
    assert "magnitude" not in said


def test_a_run_is_the_computation_its_spec_says_not_its_record(trained, tmp_path):
    """Results are compared by what a run's spec (hashed into its id) says it computes: a record
    stripped or rewritten, or files deleted, change nothing; another method's name on the same plan
    is another computation (its rewind may differ) unless both records state one id; a spec that
    does not hash to its run's id is no result."""
    from prunebench import records
    from prunebench.config import RunSpec

    store = part(trained, 0, tmp_path / "store")

    def name(spec: dict) -> str:
        return f"{(spec.get('protocol') or '').split('/')[-1]} {spec['kind']} {(spec.get('method') or {}).get('name')}"

    specs = {r: json.loads((r / "spec.json").read_text()) for r in (store / "runs").iterdir()}
    runs = {name(spec): r for r, spec in specs.items() if "rounds" not in spec}
    s2, sxb = runs["S2 pruned magnitude"], runs["SX-B pruned magnitude"]
    one = records.computation(s2)
    assert one == records.computation(sxb) and one["id"] == json.loads((s2 / "metrics.json").read_text())[
        "computation"]["id"]
    assert records.computation(runs["S2 pruned l1norm"])["key"] != one["key"]
    base = next(r for r, spec in specs.items() if spec["kind"] == "base")
    assert records.computation(base)["key"] not in (one["key"], None)
    metrics = json.loads((sxb / "metrics.json").read_text())
    (sxb / "metrics.json").write_text(json.dumps({k: v for k, v in metrics.items() if k != "computation"}))
    assert records.computation(sxb) == {"id": None, "key": one["key"]}
    for gone in ("masks.pt", "plan.json", "protocol.json"):
        (sxb / gone).unlink()
    assert records.computation(sxb) == {"id": None, "key": one["key"]}
    (sxb / "metrics.json").write_text(json.dumps({**metrics, "computation": {
        "id": "0" * 64, "content": {**metrics["computation"]["content"], "rewind": 3}}}))
    assert records.computation(sxb) == {"id": "0" * 64, "key": one["key"]}
    assert records.same_computation(one, records.computation(sxb))
    # the same plan under another method's name: another computation, unless both records state one id
    spec = RunSpec.model_validate(specs[sxb])
    other = spec.model_copy(update={"method": spec.method.model_copy(update={"name": "lottery"})})
    renamed = tmp_path / "store" / "runs" / other.run_id
    shutil.copytree(s2, renamed)
    (renamed / "spec.json").write_text(other.model_dump_json())
    assert records.computation(renamed)["key"] != one["key"]
    assert records.same_computation(one, records.computation(renamed))  # both records state one id
    m = json.loads((renamed / "metrics.json").read_text())
    (renamed / "metrics.json").write_text(json.dumps({k: v for k, v in m.items() if k != "computation"}))
    assert not records.same_computation(one, records.computation(renamed))
    # a spec edited in place no longer hashes to its run's id: no result; nor are unreadable metrics
    (s2 / "spec.json").write_text(other.model_dump_json())
    assert records.computation(s2) is None
    (renamed / "metrics.json").write_text("[]")
    assert records.computation(renamed) is None


def test_a_damaged_masks_file_does_not_stop_export_or_report(trained, tmp_path, capsys):
    """A truncated or garbage `masks.pt` of a pruned run with a scratch baseline: the report and
    export still answer (the file's damage is `bench verify`'s to name), with no traceback."""
    store = part(trained, 0, tmp_path / "store")
    masked = [r for r in (store / "runs").iterdir() if (r / "masks.pt").is_file()
              and (json.loads((r / "spec.json").read_text()).get("protocol") or "").endswith("/SX-B")]
    assert masked
    for content, run in zip((b"", b"not a pickle"), masked * 2):
        (run / "masks.pt").write_bytes(content)
        capsys.readouterr()
        assert main(["report", "--store", str(store), "--out", str(tmp_path / "r"), "--json"]) == 0
        assert main(["export", "--store", str(store), "--out", str(tmp_path / f"records{len(content)}")]) == 0
        assert "Traceback" not in capsys.readouterr().err
