"""End to end on the synthetic suite: base, l1norm, Scratch-B through the store."""

import json

import pytest

from prunebench.budget import scratch_epochs
from prunebench.errors import DatasetNotFound, ProtocolViolation
from prunebench.protocol_files import load_protocol
from prunebench.runner import Harness


def harness(store, setup="SX-B"):
    protocol, _, sha = load_protocol(setup, "synth-small")
    return Harness(protocol, store=store, protocol_sha256=sha, device="cpu", progress=False, log=lambda m: None)


def test_scratch_b_epochs_follow_the_flops_budget():
    # Rethinking's ResNet-56-A on a 160-epoch base, no retraining: int(160 * F1 / F2)
    assert scratch_epochs("Scratch-B", 160, 0, 125_485_696, 112_435_840) == 178
    # VGG-16-A, 160 + 40 epochs: 160 * 313.46 / 206.28 = 243.1 -> 243, plus 40
    assert scratch_epochs("Scratch-B", 160, 40, 313_463_808, 206_279_680) == 283
    assert scratch_epochs("Scratch-E", 160, 40, 313_463_808, 206_279_680) == 200


def test_sx_b_grid_end_to_end(user_protocols, store):
    h = harness(store)
    rows = h.run(["l1norm"], seeds=[0, 1])
    by_row = {r["row"]: r for r in rows}
    assert set(by_row) == {"dense", "l1norm", "Scratch-B of l1norm"}
    dense, pruned, scratch = by_row["dense"], by_row["l1norm"], by_row["Scratch-B of l1norm"]
    assert dense["n"] == pruned["n"] == scratch["n"] == 2
    assert dense["mean"] > 30  # learnable toy data: far above 10% chance after 3 epochs
    assert pruned["macs"] == scratch["macs"] < dense["macs"]
    assert pruned["speedup"] == pytest.approx(dense["macs"] / pruned["macs"])
    assert dense["epochs"] == 3 and pruned["epochs"] == 3 + 2
    assert scratch["epochs"] == int(3 * dense["macs"] / pruned["macs"]) + 2
    # the drop is paired by seed
    base = {json.loads((store / "runs" / i / "metrics.json").read_text())["seed"]:
            json.loads((store / "runs" / i / "metrics.json").read_text())["test_acc"] for i in dense["run_ids"]}
    accs = [json.loads((store / "runs" / i / "metrics.json").read_text()) for i in pruned["run_ids"]]
    assert pruned["drop"] == pytest.approx(sum(base[m["seed"]] - m["test_acc"] for m in accs) / 2)
    # one base per seed, shared: 2 bases + 2 pruned + 2 scratch directories
    assert len(list((store / "runs").iterdir())) == 6
    # the scratch run stayed within the FLOPs budget the pipeline spent
    m = json.loads((store / "runs" / scratch["run_ids"][0] / "metrics.json").read_text())
    assert m["budget"]["kind"] == "flops"
    assert m["train_flops"] <= m["budget"]["amount"]
    # every number traces to its run: the SQLite index agrees with the files
    db = h.store.query("SELECT id, status, test_acc FROM runs WHERE kind='pruned' ORDER BY seed")
    assert [r["id"] for r in db] == pruned["run_ids"]
    assert all(r["status"] == "done" for r in db)
    # finished runs keep no lock file; each records where its data came from
    assert not list((store / "runs").glob("*/lock"))
    assert {json.loads(p.read_text())["data_source"] for p in (store / "runs").glob("*/metrics.json")} == {
        "synthetic (generated)"}
    # the budget each row's pipeline spent (base included), beside the budget itself
    assert pruned["ratio"] == scratch["ratio"] == 0.5 and pruned["budget_kind"] == "flops"
    assert dense["budget"] is None and pruned["budget"] == scratch["budget"]
    def flops(ids):
        return [json.loads((store / "runs" / i / "metrics.json").read_text())["train_flops"] for i in ids]

    assert pruned["budget_used"] == pytest.approx((sum(flops(pruned["run_ids"])) + sum(flops(dense["run_ids"]))) / 2)
    assert pruned["budget_used"] == pytest.approx(pruned["budget"])  # the pipeline defines the budget
    assert scratch["budget_used"] == pytest.approx(sum(flops(scratch["run_ids"])) / 2)
    assert scratch["budget_used"] <= scratch["budget"]
    assert pruned["phase_epochs"] == {"retrain": 2} and scratch["phase_epochs"] == {"scratch": scratch["epochs"]}


def test_a_dataset_that_cannot_be_read_leaves_no_run_behind(store, tmp_path):
    protocol, _, sha = load_protocol("SX-B", "fmnist-smallcnn")
    (tmp_path / "empty").mkdir()
    h = Harness(protocol, store=store, protocol_sha256=sha, device="cpu", progress=False, log=lambda m: None,
                data_root=tmp_path / "empty")
    with pytest.raises(DatasetNotFound, match="fashion-mnist"):
        h.run(["l1norm"], seeds=[0])
    assert list((store / "runs").iterdir()) == []  # no directory with only spec.json and a lock


def test_second_identical_run_is_a_cache_hit(user_protocols, store):
    first = harness(store).run(["l1norm"], seeds=[0])
    logged = []
    h = harness(store)
    h.log = logged.append
    again = h.run(["l1norm"], seeds=[0])
    assert again == first
    assert logged == []  # nothing trained, nothing resumed
    assert h._data is None  # the data were not even loaded


def test_sx_a_scratch_trains_the_total_epochs(user_protocols, store):
    rows = harness(store, "SX-A").run(["l1norm"], seeds=[0])
    scratch = next(r for r in rows if r["row"].startswith("Scratch-E"))
    assert scratch["epochs"] == 3 + 2


def test_a_swapped_base_checkpoint_is_caught(user_protocols, store):
    h = harness(store)
    h.run(["l1norm"], seeds=[0])
    base_id = h.base_spec(0).run_id
    path = store / "runs" / base_id / "model.pt"
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(ProtocolViolation, match="sha256"):
        harness(store).run(["l1norm"], seeds=[0], ratio=0.25)


def test_dry_run_plan_matches_what_runs(user_protocols, store):
    h = harness(store)
    planned = h.plan(["l1norm"], seeds=[0])
    assert [p.row for p in planned] == ["dense", "l1norm", "Scratch-B of l1norm"]
    rows = h.run(["l1norm"], seeds=[0])
    assert [p.spec.run_id for p in planned] == [r["run_ids"][0] for r in rows]


def test_budgets_count_the_images_present_not_the_registered_size(user_protocols, store, tmp_path):
    """A CIFAR-10 ImageFolder copy with 40 training images: the SX-B budget is 40 images' worth of
    training FLOPs per epoch, not 50,000's (else no budget audit could ever fail on it)."""
    from PIL import Image

    from tests.conftest import write_yaml

    for split, n in (("train", 20), ("test", 5)):
        for c, cls in enumerate(("cat", "dog")):
            folder = tmp_path / "data" / "cifar10" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (32, 32), (c * 200, i * 10, 50)).save(folder / f"{i}.png")
    recipe = {"epochs": 1, "lr": 0.05, "batch_size": 16, "augment": "flip"}
    write_yaml(user_protocols / "tiny-cifar" / "suite.yaml", {"name": "tiny-cifar", "dataset": "cifar10",
                                                              "arch": "smallcnn", "seeds": [0], "base": recipe})
    write_yaml(user_protocols / "tiny-cifar" / "SX-B.yaml", {"setup": "SX-B", "suite": "tiny-cifar", "ratios": [0.5],
                                                             "retrain": recipe, "budget": {"kind": "flops"}})
    protocol, _, sha = load_protocol("SX-B", "tiny-cifar")
    h = Harness(protocol, store=store, protocol_sha256=sha, device="cpu", progress=False, log=lambda m: None,
                data_root=tmp_path / "data")
    rows = {r["row"]: r for r in h.run(["l1norm"], seeds=[0])}
    pruned, scratch, dense = rows["l1norm"], rows["Scratch-B of l1norm"], rows["dense"]
    expected = 40 * 6 * (dense["macs"] + pruned["macs"])  # one dense and one pruned epoch of 40 images
    assert pruned["budget"] == expected and pruned["budget_used"] == expected
    assert scratch["budget_used"] <= scratch["budget"] == expected
