"""Protocol files: shipped ones validate; malformed ones get a clear error; random ones either
validate or raise the documented error; Wang et al.'s notations parse."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prunebench.cli import main
from prunebench.config import Protocol
from prunebench.errors import UserError
from prunebench.protocol_files import list_protocols, load_protocol, validate_data
from prunebench.schedule import LRSchedule, parse_pf
from tests.conftest import write_yaml


def test_every_shipped_protocol_validates():
    shipped = list_protocols()
    by_suite = {}
    for suite, setup, path in shipped:
        protocol, _, _ = load_protocol(str(path))
        assert protocol.setup == setup and protocol.suite == suite
        by_suite.setdefault(suite, set()).add(setup)
    eight = {"S1", "S2", "S3.1", "S3.2", "S4.1", "S4.2", "SX-A", "SX-B"}
    assert by_suite["fmnist-smallcnn"] == eight and by_suite["cifar10-resnet56"] == eight


@pytest.mark.parametrize("epochs, lr, expected", [
    (90, 1e-1, "0:1e-1,30:1e-2,60:1e-3,75:1e-4,83:1e-5"),  # Wang et al. App. A, P30F90 at 1e-1
    (60, 1e-2, "0:1e-2,30:1e-3,45:1e-4,53:1e-5"),  # P60F60 at 1e-2
    (30, 1e-4, "0:1e-4,15:1e-5"),  # P90F30 at 1e-4
    (120, 1e-1, "0:1e-1,30:1e-2,60:1e-3,90:1e-4,105:1e-5"),  # their 120-epoch scratch schedule
])
def test_halving_rule_reproduces_appendix_a(epochs, lr, expected):
    assert LRSchedule.halving(epochs, lr) == LRSchedule.model_validate(expected)


def test_halving_inside_a_protocol_file(tmp_path):
    path = write_yaml(tmp_path / "p.yaml", {
        "setup": "S3.2", "suite": "cifar10-resnet56", "pf": "P30F90",
        "retrain": {"epochs": 90, "lr": "halving:0.1"},
    })
    protocol, _, _ = load_protocol(str(path))
    assert str(protocol.retrain.lr) == "0:0.1,30:0.01,60:0.001,75:0.0001,83:1e-05"
    assert protocol.pf_epochs == (30, 90)


def test_pf_notation():
    assert parse_pf("P30F90") == (30, 90) and parse_pf("P30/F90") == (30, 90)
    with pytest.raises(ValueError, match="P30F90"):
        parse_pf("30-90")


@pytest.mark.parametrize("change, field, says", [
    ({"setup": "S5"}, "setup", "Input should be"),
    ({"retrain": 5}, "retrain", "valid dictionary"),
    ({"retrain": {"epochs": -3, "lr": "0:0.1"}}, "retrain.epochs", "greater than or equal to 0"),
    ({"retrain": {"epochs": 10, "lr": "5:0.1"}}, "retrain.lr", "start at epoch 0"),
    ({"retrain": {"epochs": 10, "lr": "0:0.1,20:0.01"}}, "retrain", "only 10 epochs"),
    ({"budget": {"kind": "flops", "tolerance": -1}}, "budget.tolerance", "greater than or equal to 0"),
])
def test_malformed_protocol_file_names_file_and_field(tmp_path, capsys, change, field, says):
    data = {"setup": "S3.2", "suite": "fmnist-smallcnn", "retrain": {"epochs": 10, "lr": "0:0.1"}, **change}
    path = write_yaml(tmp_path / "bad.yaml", {k: v for k, v in data.items() if v is not None})
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and f"field '{field}'" in err and says in err
    assert "Traceback" not in err


def test_missing_required_field(tmp_path, capsys):
    path = write_yaml(tmp_path / "bad.yaml", {"setup": "S2", "suite": "fmnist-smallcnn"})
    assert main(["validate", str(path)]) == 2
    assert "field 'retrain': Field required" in capsys.readouterr().err


def test_validate_prints_what_is_fixed_and_what_is_free(capsys):
    assert main(["validate", "protocols/fmnist-smallcnn/S3.1.yaml"]) == 0
    out = capsys.readouterr().out
    fixed, free = out.split("Left to the method")
    assert "retraining epochs" in fixed and "retraining LR schedule" in free
    assert "retraining LR schedule" not in fixed


recipes = st.fixed_dictionaries({}, optional={
    "epochs": st.one_of(st.integers(-5, 200), st.text(max_size=3), st.none()),
    "lr": st.one_of(st.sampled_from(["0:0.1,30:0.01", "cosine:0.1", "halving:0.1", "5:0.1", "0:x", "",
                                     "halving:0.1:0.3", "cosine", "0:0.1,0:0.2"]),
                    st.floats(allow_nan=True), st.integers(-2, 2), st.lists(st.integers(), max_size=2)),
    "batch_size": st.one_of(st.integers(-2, 300), st.floats()),
    "momentum": st.floats(-1, 2),
    "samples_per_epoch": st.one_of(st.none(), st.integers(-1, 10)),
    "augment": st.sampled_from(["none", "flip", "crop+flip", "rotate"]),
    "junk": st.integers(),
})
protocols = st.fixed_dictionaries({}, optional={
    "setup": st.sampled_from(["S1", "S2", "S3.1", "S3.2", "S4.1", "S4.2", "SX-A", "SX-B", "S9", ""]),
    "suite": st.text(max_size=5),
    "ratios": st.lists(st.one_of(st.floats(-1, 2), st.just(float("nan"))), max_size=3),
    "configs": st.one_of(st.lists(st.text(max_size=2), max_size=2), st.integers()),
    "pf": st.one_of(st.none(), st.sampled_from(["P30F90", "P1F2", "F90", "P30F"])),
    "retrain": st.one_of(recipes, st.none(), st.integers()),
    "prune": st.one_of(recipes, st.none()),
    "budget": st.one_of(st.none(), st.fixed_dictionaries(
        {"kind": st.sampled_from(["flops", "epochs", "time"])},
        optional={"tolerance": st.one_of(st.floats(-1, 2), st.just(float("nan")))})),
    "extra": st.text(max_size=3),
})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(protocols, st.lists(st.integers(), max_size=2), st.text(max_size=5), st.none()))
def test_random_protocols_validate_or_raise_the_documented_error(data):
    try:
        protocol = validate_data(data, Protocol, "random.yaml")
    except UserError as e:
        assert str(e).startswith("random.yaml")
    else:
        assert isinstance(protocol, Protocol)
