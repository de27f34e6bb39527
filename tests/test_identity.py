"""Tables group runs by the content they were audited against, not by names; every run records
where it ran; code versions are rows of their own; a forged base is a violation of the run that
would start from it."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
import torch
import yaml

from prunebench.cli import main
from prunebench.config import content_sha256
from prunebench.errors import ProtocolViolation, UserError
from prunebench.machine import label
from prunebench.protocol_files import load_protocol
from prunebench.report import build
from prunebench.runner import Harness
from prunebench.store import Store
from tests.conftest import LADDER, SUITE, write_yaml
from tests.test_divisions import FORGER  # retrains the base, rewrites its model.pt and sha256


def harness(name: str, store: Path, suite: str = "synth-small", **kw) -> Harness:
    protocol, _, sha = load_protocol(name, suite)
    return Harness(protocol, store=store, protocol_sha256=sha, device="cpu", progress=False, log=lambda m: None, **kw)


def tables(store: Path, **kw) -> dict:
    return {(t.setup, t.identity): t for t in build(Store(store), **kw)}


def test_a_private_copy_of_a_protocol_gets_its_own_table(user_protocols, store, tmp_path):
    honest = harness("S3.2", store).run(["l1norm"], seeds=[0])
    private = write_yaml(tmp_path / "mine" / "S3.2.yaml",
                         {**LADDER["S3.2"], "retrain": {**LADDER["S3.2"]["retrain"], "epochs": 3, "lr": "0:0.05"}})
    boosted = harness(str(private), store).run(["l1norm"], seeds=[0])
    found = tables(store)
    shipped = found[("S3.2", "")]
    sha = content_sha256(load_protocol(str(private))[0])
    custom = found[("S3.2", f"custom protocol S3.2 (sha256 {sha[:12]})")]
    assert [c.runs for c in shipped.cells] == [{0: honest[1]["run_ids"][0]}]
    assert [c.runs for c in custom.cells] == [{0: boosted[1]["run_ids"][0]}]
    assert custom.slug != shipped.slug and "custom protocol S3.2" in custom.name
    run = store / "runs" / boosted[1]["run_ids"][0]
    m = json.loads((run / "metrics.json").read_text())
    assert m["protocol_sha256"] == sha and m["protocol_file_sha256"] == hashlib.sha256(private.read_bytes()).hexdigest()
    assert json.loads((run / "protocol.json").read_text())["protocol"]["retrain"]["epochs"] == 3
    # the same content under another file name, comments or layout is the same protocol
    same = tmp_path / "copy.yaml"
    same.write_text("# a comment\n" + yaml.safe_dump(LADDER["S3.2"], sort_keys=True))
    shipped_protocol = load_protocol("S3.2", "synth-small")[0]
    assert content_sha256(load_protocol(str(same))[0]) == content_sha256(shipped_protocol)
    # what runs by default (ratios, configs) and the description are not what a protocol fixes
    assert content_sha256(shipped_protocol.model_copy(update={"ratios": [0.3, 0.7], "description": "x"})) == \
        content_sha256(shipped_protocol)
    assert main(["report", "--store", str(store), "--out", str(tmp_path / "report")]) == 0
    (page,) = [p.read_text() for p in (tmp_path / "report").glob("synth-small_S3.2_*.md")]
    assert page.startswith(f"# Leaderboard: synth-small under S3.2 (custom protocol S3.2 (sha256 {sha[:12]}))")


def test_a_private_suite_with_a_shipped_name_gets_its_own_table(user_protocols, store, tmp_path, monkeypatch):
    harness("S2", store).run(["l1norm"], seeds=[0])
    private = tmp_path / "private"
    write_yaml(private / "synth-small" / "suite.yaml", {**SUITE, "base": {**SUITE["base"], "epochs": 8}})
    write_yaml(private / "synth-small" / "S2.yaml", LADDER["S2"])
    monkeypatch.setenv("PRUNEBENCH_PROTOCOLS", str(private))
    harness("S2", store).run(["l1norm"], seeds=[0])
    monkeypatch.setenv("PRUNEBENCH_PROTOCOLS", str(user_protocols))
    found = tables(store)
    assert set(found) == {("S2", ""), ("S2", next(k for s, k in found if k.startswith("custom suite synth-small")))}
    assert {t.dense.runs[0] for t in found.values()} .__len__() == 2  # each against its own base


def test_runs_record_where_they_ran_and_tables_say_when_machines_differ(user_protocols, store):
    rows = harness("S2", store).run(["l1norm", "random"], seeds=[0])
    m = json.loads((store / "runs" / rows[1]["run_ids"][0] / "metrics.json").read_text())
    assert m["machine"]["torch"] == torch.__version__ and m["machine"]["device"] == "cpu"
    assert m["machine"]["threads"] == torch.get_num_threads() and m["machine"]["cpu"]
    # the kernels torch dispatches to: a CPU's model name alone can stand for an AVX2 and an AVX-512 part
    assert m["machine"]["cpu_kernels"].split(", ")[0] == torch.backends.cpu.get_cpu_capability()
    assert label(m["machine"]).startswith(f"{m['machine']['cpu']} [{m['machine']['cpu_kernels']}], ")
    assert label({**m["machine"], "cpu_kernels": None}).startswith(f"{m['machine']['cpu']}, ")  # an older record
    (table,) = build(Store(store))
    assert table.machines == []
    db = sqlite3.connect(store / "index.sqlite")
    db.execute("UPDATE runs SET machine = 'Other CPU, 8 threads, torch 2.0' WHERE id = ?", (rows[2]["run_ids"][0],))
    db.commit()
    (table,) = build(Store(store))
    assert len(table.machines) == 2 and "Other CPU" in " ".join(table.machines)


VERSIONED = '''
from prunebench import Method, register_method
from prunebench.methods.l1norm import L1Norm

# version {version}


@register_method
class Versioned(L1Norm):
    name = "versioned"
'''


def test_code_versions_of_a_method_are_rows_of_their_own(user_protocols, store, tmp_path):
    plugin = tmp_path / "versioned.py"
    plugin.write_text(VERSIONED.format(version=1))
    first = harness("S2", store, plugins=(str(plugin),)).run(["versioned"], seeds=[0])
    plugin.write_text(VERSIONED.format(version=2))
    second = harness("S2", store, plugins=(str(plugin),)).run(["versioned"], seeds=[0])
    assert first[1]["run_ids"] != second[1]["run_ids"]
    (table,) = build(Store(store))
    code = Store(store).spec(first[1]["run_ids"][0]).method.code
    rows = {c.row: c.runs for c in table.cells}
    assert rows == {"versioned": {0: second[1]["run_ids"][0]},
                    f"versioned (older code {code[:8]})": {0: first[1]["run_ids"][0]}}
    assert all(not c.superseded for c in table.cells)


def test_a_forged_base_is_a_violation_recorded_in_the_store(user_protocols, store, tmp_path, capsys):
    harness("S2", store).run(["l1norm"], seeds=[0])  # a pruned run pins the base it started from
    plugin = tmp_path / "forger.py"
    plugin.write_text(FORGER.format(store=str(store)))
    # a fresh process: nothing kept in memory, the pin of the l1norm run is what catches it
    harness("S2", store, plugins=(str(plugin),), sandbox="off").plan(["cheat-forges-base"], seeds=[0])
    base = harness("S2", store).base_spec(0).run_id
    assert main(["run", "--protocol", "S2", "--suite", "synth-small", "--method", "random", "--seeds", "0",
                 "--store", str(store)]) == 3
    err = capsys.readouterr().err
    assert "base checkpoint sha256 (pinned by run" in err and f"Run {base[:12]} is marked violated" in err
    assert json.loads((store / "runs" / base / "violation.json").read_text())["rule"].startswith(
        "base checkpoint sha256")
    (row,) = Store(store).query("SELECT status FROM runs WHERE id = ?", (base,))
    assert row["status"] == "violated"
    assert not [p for p in (store / "runs").iterdir() if (p / "spec.json").exists()
                and json.loads((p / "spec.json").read_text()).get("method", {}).get("name") == "random"]
    # a base the harness itself set aside as damaged and trained again is no forgery
    (store / "runs" / base / "violation.json").unlink()
    aside = store / "runs" / base / "damaged-20260101-000000-000000"
    aside.mkdir()
    pin = json.loads(next((store / "runs").glob("*/base.json")).read_text())["model_sha256"]
    (aside / "metrics.json").write_text(json.dumps({"model_sha256": pin}))
    assert main(["run", "--protocol", "S2", "--suite", "synth-small", "--method", "random", "--seeds", "0",
                 "--store", str(store)]) == 0


def test_a_rewind_outside_the_base_is_an_error_not_an_assert(user_protocols, store):
    with pytest.raises(UserError, match="cannot rewind to epoch 9"):
        harness("S2", store).plan(["lottery:rewind_epoch=9"], seeds=[0])
    h = harness("S2", store)
    base = h.base_spec(0)
    h.run(["l1norm"], seeds=[0])
    with pytest.raises(ProtocolViolation, match="rewind epoch within the base's training"):
        h.rewound(base.run_id, 9, store / "runs" / base.run_id)
