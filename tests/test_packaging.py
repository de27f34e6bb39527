"""The installed distribution: one import name (`prunebench`), its protocol files inside it, a
public surface for plug-ins, nothing shadowed by a user's folders, and commands that read only
YAML files or run directories load without torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_the_wheel_has_one_top_level_name_and_carries_the_protocol_files(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for part in ("pyproject.toml", "README.md", "benchmark", "methods", "protocols", "benchmarks"):
        copy = shutil.copytree if (REPO / part).is_dir() else shutil.copy
        copy(REPO / part, source / part)  # a copy: the build writes build/ and egg-info beside it
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("prunebench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"prunebench"}  # not benchmark, benchmarks, methods or protocols
    assert "prunebench/protocols/fmnist-smallcnn/SX-B.yaml" in names
    assert "prunebench/methods/l1norm.py" in names and "prunebench/models/cifar_resnet.py" in names
    assert not any("benchmarks" in n or n.startswith("prunebench/tests") for n in names)  # speed scripts stay out
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "bench = prunebench.__main__:main" in zipfile.ZipFile(wheel).read(entry).decode()


def bench(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prunebench.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_a_users_methods_and_protocols_folders_change_nothing(tmp_path):
    # research code often has its own methods/ package and a protocols/ folder
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "__init__.py").write_text("raise ImportError('the user package, not ours')\n")
    (tmp_path / "protocols").mkdir()
    (tmp_path / "protocols" / "__init__.py").write_text("")
    (tmp_path / "benchmark").mkdir()
    (tmp_path / "benchmark" / "__init__.py").write_text("raise ImportError('the user package, not ours')\n")
    methods = bench(["list", "methods"], tmp_path)
    assert methods.returncode == 0, methods.stderr
    assert all(f"\n{name} " in methods.stdout for name in ("l1norm", "slimming", "lottery", "scratch"))
    protocols = bench(["list", "protocols"], tmp_path)
    assert protocols.returncode == 0, protocols.stderr
    assert "fmnist-smallcnn" in protocols.stdout and "SX-B" in protocols.stdout
    dry = bench(["run", "--protocol", "SX-B", "--method", "l1norm", "--seeds", "0", "--dry-run"], tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "Scratch-B of l1norm" in dry.stdout


def test_plugins_import_the_public_surface_from_the_top():
    import prunebench
    from prunebench import Method, PruningPlan, Target, register_method
    from prunebench.method import Method as M
    from prunebench.pruning import PruningPlan as P

    assert (Method, PruningPlan) == (M, P) and callable(register_method) and Target is not None
    assert set(prunebench.__all__) <= set(dir(prunebench))
    with pytest.raises(AttributeError, match="no attribute 'nosuch'"):
        prunebench.nosuch  # noqa: B018


LOADS_TORCH = """
import contextlib, io, sys
from prunebench.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
    rc = main(sys.argv[1:])
print(rc, 'torch' in sys.modules)
"""


@pytest.mark.parametrize("args", [
    ["list", "suites"],
    ["list", "protocols"],
    ["validate", str(REPO / "protocols" / "fmnist-smallcnn" / "S3.1.yaml")],
    ["compare", "aaaa", "bbbb"],  # a store with no such runs: an error, still without torch
])
def test_commands_that_read_yaml_or_run_files_do_not_import_torch(args, tmp_path):
    (tmp_path / "store" / "runs").mkdir(parents=True)
    if args[0] == "compare":
        args = [*args, "--store", str(tmp_path / "store")]
    proc = subprocess.run([sys.executable, "-c", LOADS_TORCH, *args], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    rc, torch_loaded = proc.stdout.split()[-2:]
    assert torch_loaded == "False", (args, proc.stdout, proc.stderr)
    assert rc == ("0" if args[0] in ("list", "validate") else "2")


def test_compare_reads_run_files_without_torch(tmp_path):
    """Two stored runs compared from their files alone (spec and metrics), in a process without torch."""
    from prunebench.config import RunSpec, canonical

    recipe = {"epochs": 2, "lr": "0:0.1", "batch_size": 32}
    ids = []
    for lr in ("0:0.1", "0:0.2"):
        spec = RunSpec(suite="s", dataset="synthetic", arch="smallcnn", arch_signature="x", kind="pruned", seed=0,
                       phases=[("retrain", {**recipe, "lr": lr})], protocol="s/S3.1", base="b" * 64,
                       method={"name": "l1norm", "ratio": 0.5})
        run = tmp_path / "runs" / spec.run_id
        run.mkdir(parents=True)
        (run / "spec.json").write_text(canonical(spec))
        (run / "metrics.json").write_text(json.dumps({"test_acc": 50.0, "macs": 10, "epochs": 2, "total_epochs": 4,
                                                      "train_flops": 1, "model_sha256": "m"}))
        ids.append(spec.run_id)
    proc = subprocess.run([sys.executable, "-c", LOADS_TORCH, "compare", ids[0][:10], ids[1][:10],
                           "--store", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split()[-2:] == ["0", "False"], proc.stdout + proc.stderr
