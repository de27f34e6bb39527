"""Shared fixtures: a user protocols folder with a tiny synthetic suite, and a fresh store."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

SUITE = {
    "name": "synth-small",
    "description": "synthetic toy data, tests only",
    "dataset": "synthetic",
    "arch": "smallcnn",
    "seeds": [0, 1],
    "base": {"epochs": 3, "lr": "0:0.1,2:0.01", "batch_size": 64, "augment": "flip"},
}
RETRAIN = {"epochs": 2, "lr": "0:0.01,1:0.001", "batch_size": 64, "augment": "flip"}
SX_B = {"setup": "SX-B", "suite": "synth-small", "ratios": [0.5], "retrain": RETRAIN,
        "budget": {"kind": "flops", "tolerance": 0.01}}
SX_A = {**SX_B, "setup": "SX-A", "budget": {"kind": "epochs", "tolerance": 0.0}}
PRUNE = {"epochs": 1, "lr": "0:0.01", "batch_size": 64, "augment": "flip"}
LADDER = {setup: {"setup": setup, "suite": "synth-small", "ratios": [0.5], "retrain": RETRAIN,
                  **({"prune": PRUNE} if setup.startswith("S4") else {})}
          for setup in ("S1", "S2", "S3.1", "S3.2", "S4.1", "S4.2")}


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def synth_protocols(root: Path) -> pytest.MonkeyPatch:
    """For module fixtures: the synthetic suite with S2 and SX-B under `root/protocols`, on
    $PRUNEBENCH_PROTOCOLS until the returned MonkeyPatch is undone."""
    protocols = root / "protocols"
    write_yaml(protocols / "synth-small" / "suite.yaml", SUITE)
    write_yaml(protocols / "synth-small" / "S2.yaml", LADDER["S2"])
    write_yaml(protocols / "synth-small" / "SX-B.yaml", SX_B)
    mp = pytest.MonkeyPatch()
    mp.setenv("PRUNEBENCH_PROTOCOLS", str(protocols))
    return mp


@pytest.fixture
def user_protocols(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A protocols folder holding the synthetic suite and all eight setups, on $PRUNEBENCH_PROTOCOLS."""
    root = tmp_path / "user-protocols"
    write_yaml(root / "synth-small" / "suite.yaml", SUITE)
    for setup, protocol in LADDER.items():
        write_yaml(root / "synth-small" / f"{setup}.yaml", protocol)
    write_yaml(root / "synth-small" / "SX-B.yaml", SX_B)
    write_yaml(root / "synth-small" / "SX-A.yaml", SX_A)
    monkeypatch.setenv("PRUNEBENCH_PROTOCOLS", str(root))
    return root


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"
