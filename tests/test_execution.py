"""Precision is part of the recipe (and audited); torch.compile is not; FLOPs are traced once per
architecture."""

from __future__ import annotations

import shutil

import pytest
import torch

from prunebench import flops
from prunebench.config import Recipe
from prunebench.errors import ProtocolViolation
from prunebench.executor import Executor
from prunebench.models import ARCHS
from prunebench.protocol_files import load_protocol
from prunebench.runner import Harness
from tests.conftest import RETRAIN, write_yaml
from tests.plugins import UNFAIR


def harness(setup: str, store, **kw) -> Harness:
    protocol, _, sha = load_protocol(setup, "synth-small")
    kw.setdefault("plugins", (UNFAIR,))  # test-fp32
    return Harness(protocol, store=store, protocol_sha256=sha, device="cpu", progress=False, log=lambda m: None, **kw)


@pytest.fixture
def bf16_protocol(user_protocols):
    """S3.1 of the synthetic suite with bf16 retraining, as a protocol file."""
    return write_yaml(user_protocols / "synth-small" / "S3.1-bf16.yaml",
                      {"setup": "S3.1", "suite": "synth-small", "ratios": [0.5],
                       "retrain": {**RETRAIN, "precision": "bf16"}})


def test_bf16_is_a_recipe_field_that_trains_under_autocast_and_is_audited(bf16_protocol, tmp_path):
    assert Recipe(epochs=1, lr="0:0.1").precision == "fp32"
    with pytest.raises(ValueError, match="precision"):
        Recipe(epochs=1, lr="0:0.1", precision="fp16")
    store = tmp_path / "store"
    fp32, bf16 = harness("S3.1", store), harness(str(bf16_protocol), store)
    [s32] = [p.spec for p in fp32.plan(["l1norm"], [0]) if p.spec.kind == "pruned"]
    [s16] = [p.spec for p in bf16.plan(["l1norm"], [0]) if p.spec.kind == "pruned"]
    assert s32.base == s16.base and s32.run_id != s16.run_id  # the same base; a different run
    fp32.run(["l1norm"], [0])
    bf16.run(["l1norm"], [0])
    t32, t16 = fp32.files.trace(s32.run_id), bf16.files.trace(s16.run_id)
    assert {r.precision for r in t32.rows} == {"fp32"} and {r.precision for r in t16.rows} == {"bf16"}
    # autocast really ran: the same data order, the same start, different arithmetic
    assert t16.rows[0].train_loss != t32.rows[0].train_loss
    assert t16.rows[0].train_loss == pytest.approx(t32.rows[0].train_loss, rel=0.05)
    # a method that trains in another precision than the protocol fixes is a violation
    with pytest.raises(ProtocolViolation, match="precision"):
        bf16.run(["test-fp32"], [0])


def test_bf16_on_a_cpu_that_emulates_it_is_announced_before_training(bf16_protocol, tmp_path, monkeypatch):
    """A CPU without bf16 units (AVX2 only, say) trains bf16 an order of magnitude slower than fp32,
    with no line in the log for the length of an epoch: the run says so before it starts."""
    from prunebench import machine

    def announced(native: bool, protocol: str) -> list[str]:
        monkeypatch.setattr(machine, "native_bf16", lambda: native)
        lines: list[str] = []
        h = harness(protocol, tmp_path / "store")
        h.log = lines.append
        h.run(["l1norm"], [0])
        return [line for line in lines if "no bf16 units" in line]

    assert announced(True, str(bf16_protocol)) == []  # trained: the base (fp32) and the bf16 pruned run
    assert announced(False, "S3.2") == []  # nothing in bf16
    shutil.rmtree(tmp_path / "store")
    (line,) = announced(False, str(bf16_protocol))
    assert f"[{machine.cpu_kernels()}]" in line and "1 of the runs to train use the suite's bf16" in line
    assert announced(False, str(bf16_protocol)) == []  # all done: nothing to train


@pytest.mark.skipif(shutil.which("cc") is None, reason="torch.compile (inductor) needs a C compiler on CPU")
def test_compile_is_an_execution_setting_with_the_same_runs_and_results(user_protocols, tmp_path):
    plain = harness("S2", tmp_path / "plain").run(["l1norm"], [0])
    compiled_harness = harness("S2", tmp_path / "compiled", compiled=True)
    compiled = compiled_harness.run(["l1norm"], [0])
    assert [r["run_ids"] for r in compiled] == [r["run_ids"] for r in plain]
    for a, b in zip(compiled, plain):
        assert a["mean"] == pytest.approx(b["mean"], abs=1.0)  # fused kernels may round differently
    # checkpoints hold the model's own weights (no torch.compile wrapper in the names)
    [rid] = compiled[1]["run_ids"]
    state = torch.load(tmp_path / "compiled" / "runs" / rid / "model.pt")
    assert not any(k.startswith("_orig_mod") for k in state)


def test_flops_are_traced_once_per_architecture(monkeypatch):
    traced = []

    from torch.utils import flop_counter

    class Counting(flop_counter.FlopCounterMode):
        def __enter__(self):
            traced.append(1)
            return super().__enter__()

    monkeypatch.setattr(flop_counter, "FlopCounterMode", Counting)
    monkeypatch.setattr(flops, "_COUNTS", type(flops._COUNTS)())
    arch = ARCHS.get("smallcnn")
    a, b = arch.build(10, 1), arch.build(10, 1)
    dense = flops.forward_macs(a, (1, 16, 16))
    assert flops.forward_macs(b, (1, 16, 16)) == dense and flops.effective_macs(a, (1, 16, 16)) == dense
    assert len(traced) == 1  # one architecture, three questions
    # masked weights: the same architecture (no new trace), fewer effective MACs
    conv = next(m for m in a.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        conv.weight[: conv.out_channels // 2] = 0
    assert flops.effective_macs(a, (1, 16, 16)) < dense and len(traced) == 1
    # another input size or another width is another architecture
    assert flops.forward_macs(a, (1, 28, 28)) > dense and len(traced) == 2
    wide = arch.build(10, 3)
    assert flops.forward_macs(wide, (3, 16, 16)) > dense and len(traced) == 3


class LastFinishedFirst(Executor):
    """Trains the grid one run at a time, then hands the results back in reverse, as a parallel
    executor may (Ray returns runs in the order they finish)."""

    def run(self, harness, methods, seeds, ratio, config, borrow, speedup=None):
        done = [(job, harness.execute(job.spec, job.start, job.budget))
                for job in harness.grid(methods, seeds, ratio, config, live=True, borrow=borrow, speedup=speedup)]
        return done[::-1]


def test_rows_come_in_grid_order_and_seed_order_whatever_order_runs_finish(user_protocols, store):
    sequential = harness("SX-B", store).run(["l1norm", "random"], seeds=[1, 0])
    reversed_ = harness("SX-B", store, executor=LastFinishedFirst()).run(["l1norm", "random"], seeds=[1, 0])
    assert reversed_ == sequential
    assert [r["row"] for r in sequential] == ["dense", "l1norm", "Scratch-B of l1norm", "random",
                                              "Scratch-B of random"]
    assert all([s["seed"] for s in r["per_seed"]] == [0, 1] for r in sequential)  # by seed, not as given
