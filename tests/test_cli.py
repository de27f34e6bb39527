"""The CLI: listings, FLOPs, and one-paragraph errors (exit code != 0, no traceback)."""

import json
import re
import subprocess
import sys

import pytest

from prunebench.cli import main
from tests.conftest import write_yaml


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_flops_json(capsys):
    code, out, _ = run_cli(capsys, "flops", "--arch", "resnet56", "--config", "A", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["macs"] == 112_435_840 and data["dense_macs"] == 125_485_696
    assert data["params"] == 773_336


def test_list_everything(capsys, user_protocols):
    for kind, expected in [("archs", "resnet110"), ("datasets", "fashion-mnist"), ("suites", "fmnist-smallcnn"),
                           ("methods", "l1norm"), ("protocols", "SX-B")]:
        code, out, _ = run_cli(capsys, "list", kind)
        assert code == 0 and expected in out
    _, out, _ = run_cli(capsys, "list", "suites")
    assert "synth-small" in out  # user suites from $PRUNEBENCH_PROTOCOLS


@pytest.mark.parametrize("argv, needle", [
    (["run", "--protocol", "SX-B", "--method", "nosuch", "--dry-run"], "unknown method 'nosuch'. Valid names: greg, "),
    (["run", "--protocol", "S9", "--method", "l1norm"], "unknown protocol 'S9' for suite 'fmnist-smallcnn'. Valid names: S1, S2, S3.1, S3.2, S4.1, S4.2, SX-A, SX-B"),
    (["run", "--protocol", "SX-B", "--suite", "nosuch", "--method", "l1norm"], "unknown suite 'nosuch'. Valid names:"),
    (["flops", "--arch", "resnet57"],
     "unknown architecture 'resnet57'. Did you mean 'resnet56'? Valid names: densenet40, preresnet164, resnet110"),
    (["flops", "--arch", "resnet20", "--config", "A"], "has no named config 'A'"),
    (["run", "--protocol", "SX-B", "--method", "l1norm", "--ratio", "1.0"], "outside [0, 1)"),
    (["run", "--protocol", "SX-B", "--method", "l1norm", "--ratio", "-0.1"], "outside [0, 1)"),
    (["run", "--protocol", "SX-B", "--method", "l1nrom", "--dry-run"],
     "unknown method 'l1nrom'. Did you mean 'l1norm'?"),
    (["run", "--protocol", "sx-b", "--method", "l1norm"],
     "unknown protocol 'sx-b' for suite 'fmnist-smallcnn'. Did you mean 'SX-B'?"),
    (["flops", "--arch", "resnet5"], "Did you mean 'resnet56'?"),
    (["run", "--protocol", "SX-B", "--method", "l1norm", "--data-root", "/does/not/exist", "--seeds", "0"],
     "the data root /does/not/exist (--data-root) does not exist"),
])
def test_user_errors_are_one_paragraph(capsys, argv, needle):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert needle in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_malformed_protocol_names_file_and_field(capsys, tmp_path):
    bad = write_yaml(tmp_path / "bad.yaml", {
        "setup": "SX-B", "suite": "fmnist-smallcnn", "budget": {"kind": "flops"},
        "retrain": {"epochs": -1, "lr": "0:0.1"},
    })
    code, _, err = run_cli(capsys, "run", "--protocol", str(bad), "--method", "l1norm")
    assert code == 2
    assert str(bad) in err and "field 'retrain.epochs'" in err and "greater than or equal to 0" in err


def test_missing_dataset_says_where_it_looked(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEBENCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "run", "--protocol", "SX-B", "--suite", "cifar10-resnet56", "--method",
                           "l1norm", "--seeds", "0", "--store", str(tmp_path / "s"),
                           "--data-root", str(tmp_path / "empty"))
    assert code == 2
    assert "dataset 'cifar10' not found" in err and str(tmp_path / "empty") in err and "--data-root" in err
    assert "DIR/cifar10/{train,test}/<class>/" in err  # and how to get it


def test_dry_run_prints_phases_and_budget(capsys, user_protocols, tmp_path):
    code, out, _ = run_cli(capsys, "run", "--protocol", "SX-B", "--suite", "synth-small", "--method", "l1norm",
                           "--store", str(tmp_path / "s"), "--dry-run", "--json")
    assert code == 0
    planned = json.loads(out)
    assert [p["row"] for p in planned] == ["dense", "l1norm", "Scratch-B of l1norm"] * 2
    scratch = planned[2]
    dense_macs = planned[0]["macs"]
    epochs = int(3 * dense_macs / scratch["macs"]) + 2
    assert scratch["phases"] == [{"phase": "scratch", "epochs": epochs, "lr": scratch["phases"][0]["lr"],
                                  "samples": epochs * 640, "batch_size": 64}]
    assert scratch["budget"] == 640 * 6 * (3 * dense_macs + 2 * scratch["macs"])
    assert not (tmp_path / "s" / "runs").exists() or not any((tmp_path / "s" / "runs").iterdir())


def test_console_script_exit_code_without_traceback():
    proc = subprocess.run([sys.executable, "-m", "prunebench.cli", "flops", "--arch", "nosuch"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "unknown architecture" in proc.stderr


def test_yaml_syntax_error_points_at_file_line_and_column(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("setup: SX-B\nsuite: fmnist-smallcnn\nretrain:\n  epochs: 2\n   lr: 0.1\n")
    code, _, err = run_cli(capsys, "validate", str(bad))
    assert code == 2 and "Traceback" not in err
    first, line, caret, *_ = err.splitlines()
    assert first.startswith(f"bench: error: {bad}:5:6: not valid YAML: mapping values are not allowed here")
    assert line == "       lr: 0.1" and caret.index("^") == line.index(":")  # the caret under the offending colon


def test_run_table_says_what_its_numbers_mean(capsys, user_protocols, tmp_path):
    """SX-A with a method that trains its own pruning phase: the epochs split base+prune+retrain,
    the budget column, drop explained in points, MACs per image, and JSON numbers as numbers."""
    argv = ["run", "--protocol", "SX-A", "--suite", "synth-small", "--method", "slimming", "--seeds", "0",
            "--store", str(tmp_path / "s")]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    lines = out.splitlines()
    header = next(line for line in lines if "test acc %" in line)
    for column in ("drop (pts)", "MACs/image", "epochs (of budget)"):
        assert column in header
    slimming = next(line for line in lines if line.startswith("slimming "))
    assert " 5 (3+1+1) " in slimming and "5 (100.0%)" in slimming  # 3 base + 1 pruning + 1 retraining epochs
    scratch = next(line for line in lines if line.startswith("Scratch-E of slimming"))
    assert " 5 (100.0%) " in scratch
    assert "Epochs: total trained, the shared base's included (base+prune+retrain)." in out
    assert "Drop: accuracy points lost against the base model of the same seed" in out
    assert "MACs/image: one forward pass of one image" in out and "MACs: MACs" not in out
    # the accuracy column lines up whatever n is: means right-aligned, the std in a column of its own
    body = lines[lines.index(header) + 2:]
    body = body[:body.index("")]
    end = header.index("test acc %") + len("test acc %")
    assert len(body) == 3 and all(re.fullmatch(r" \d+\.\d\d", line[end - 6:end]) for line in body)
    code, out, _ = run_cli(capsys, *argv, "--json")
    rows = json.loads(out)

    def floats(x):
        if isinstance(x, float):
            yield x
        elif isinstance(x, dict):
            for v in x.values():
                yield from floats(v)
        elif isinstance(x, list):
            for v in x:
                yield from floats(v)

    assert all(round(f, 4) == f for f in floats(rows))  # no 1.7799999999999965
    slim = next(r for r in rows if r["row"] == "slimming")
    assert slim["ratio"] == 0.5 and slim["config"] is None and slim["phase_epochs"] == {"prune": 1, "retrain": 1}
    assert slim["budget_kind"] == "epochs" and slim["budget"] == slim["budget_used"] == 5


@pytest.mark.parametrize("argv, needle", [
    (["run", "--protocol", "S2", "--method", 'l1norm:retrain_lr="0:0.1,4:0.01"', "--seeds", "0", "--dry-run"],
     "its retrain_lr 0:0.1,4:0.01 does not fit the retraining recipe (4 epochs)"),
    (["run", "--protocol", "S2", "--method", "l1norm", "--device", "gpu", "--dry-run"], "is not a torch device"),
    (["run", "--protocol", "S2", "--method", "l1norm", "--seeds", "99999999999999999999", "--dry-run"],
     "seeds are integers from 0 to 2147483647"),
    (["run", "--protocol", "S2", "--method", "l1norm", "--ratio", "nan", "--dry-run"], "outside [0, 1)"),
    (["run", "--protocol", "S2", "--method", "l1norm:retrain_lr=0:0.1,2:0.01", "--dry-run"],
     "quote a value that holds commas"),
])
def test_more_user_errors_are_one_paragraph(capsys, argv, needle):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and needle in err and "Traceback" not in err


def test_cuda_device_without_a_gpu_is_a_user_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = run_cli(capsys, "run", "--protocol", "S2", "--method", "l1norm", "--device", "cuda", "--dry-run")
    assert code == 2 and "PyTorch sees no CUDA GPU" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("prunebench ")


def test_protocols_env_and_a_suite_beside_a_protocol_file(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEBENCH_PROTOCOLS", str(tmp_path / "nowhere"))
    code, _, err = run_cli(capsys, "list", "suites")
    assert code == 2 and "PRUNEBENCH_PROTOCOLS names" in err and "not a folder" in err
    monkeypatch.delenv("PRUNEBENCH_PROTOCOLS")
    folder = tmp_path / "mine" / "tiny"
    write_yaml(folder / "suite.yaml", {"name": "tiny", "dataset": "synthetic", "arch": "smallcnn",
                                       "base": {"epochs": 2, "lr": 0.1}})
    protocol = write_yaml(folder / "S2.yaml", {"setup": "S2", "suite": "tiny", "retrain": {"epochs": 1, "lr": 0.01}})
    code, _, err = run_cli(capsys, "run", "--protocol", str(protocol), "--method", "l1norm", "--dry-run")
    assert code == 2 and f"export PRUNEBENCH_PROTOCOLS={tmp_path / 'mine'}" in err


def test_a_named_data_root_is_checked_even_when_every_run_is_cached(capsys, user_protocols, tmp_path):
    argv = ["run", "--protocol", "S2", "--suite", "synth-small", "--method", "l1norm", "--seeds", "0",
            "--store", str(tmp_path / "s")]
    assert run_cli(capsys, *argv)[0] == 0
    code, _, err = run_cli(capsys, *argv, "--data-root", str(tmp_path / "typo"))
    assert code == 2 and "does not exist" in err


def test_validate_names_a_suite_file_and_a_budget_outside_sx(capsys, tmp_path):
    code, _, err = run_cli(capsys, "validate", "protocols/fmnist-smallcnn/suite.yaml")
    assert code == 2 and "is a suite file" in err and err.count("\n") == 1
    path = write_yaml(tmp_path / "p.yaml", {"setup": "S3.1", "suite": "fmnist-smallcnn", "budget": {"kind": "flops"},
                                            "retrain": {"epochs": 2, "lr": 0.01}})
    code, _, err = run_cli(capsys, "validate", str(path))
    assert code == 2 and "setup S3.1 has no total budget" in err


def test_a_plugin_module_is_found_in_the_current_folder(capsys, tmp_path, monkeypatch):
    from tests.test_methods import readme_plugin

    (tmp_path / "my_methods_cwd.py").write_text(readme_plugin().replace('"spread"', '"spread-cwd"'))
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "list", "methods", "--plugins", "my_methods_cwd")
    assert code == 0, err
    assert "spread-cwd" in out
    assert str(tmp_path) not in sys.path  # the folder is searched for the plug-in only
