"""Suites and protocols are data: YAML files under `protocols/<suite>/`, validated on load.

`suite.yaml` defines a suite (dataset, architecture, base recipe); every other file there is
one setup's protocol, named after the setup (`SX-B.yaml`). A user's own protocol is any YAML
file passed by path.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from benchmark._registry import Registry
from benchmark.config import Protocol, Suite
from benchmark.errors import UserError

DEFAULT_SUITE = "fmnist-smallcnn"
SUITES: Registry[Suite] = Registry("suite")
_loaded = False


def protocols_root() -> Path:
    import protocols

    return Path(protocols.__file__).parent


def read_model(path: Path, model: type[BaseModel]) -> BaseModel:
    """Load a YAML file into a config model; errors name the file, the field and what was expected."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}.") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML: {e}".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping of fields, found {type(data).__name__}.")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in err['loc']) or '(top level)'}': {err['msg']}"
            for err in e.errors()
        )
        raise UserError(f"{path}: {problems}. Fix the file and run again.") from None


def load_suites() -> Registry[Suite]:
    global _loaded
    if not _loaded:
        for path in sorted(protocols_root().glob("*/suite.yaml")):
            suite = read_model(path, Suite)
            assert isinstance(suite, Suite)
            if suite.name != path.parent.name:
                raise UserError(f"{path}: field 'name' is {suite.name!r} but the folder is {path.parent.name!r}.")
            SUITES.register(suite.name, suite)
        _loaded = True
    return SUITES


def list_protocols() -> list[tuple[str, str, Path]]:
    """(suite, setup, file) of every shipped protocol."""
    out = []
    for path in sorted(protocols_root().glob("*/*.yaml")):
        if path.name != "suite.yaml":
            out.append((path.parent.name, path.stem, path))
    return out


def protocol_path(name: str, suite: str) -> Path:
    """A protocol file, given as a path or as a setup name of the suite."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        path = Path(name)
        if not path.exists():
            raise UserError(f"protocol file {name} does not exist.")
        return path
    load_suites().get(suite)  # an unknown suite is reported first
    path = protocols_root() / suite / f"{name}.yaml"
    if not path.exists():
        valid = [s for su, s, _ in list_protocols() if su == suite]
        raise UserError(
            f"unknown protocol {name!r} for suite {suite!r}. Valid names: {', '.join(valid) or '(none)'}; "
            "or pass a protocol file by path."
        )
    return path


def load_protocol(name: str, suite: str = DEFAULT_SUITE) -> tuple[Protocol, Path, str]:
    """The protocol, its file and the file's sha256 (provenance)."""
    path = protocol_path(name, suite)
    protocol = read_model(path, Protocol)
    assert isinstance(protocol, Protocol)
    load_suites().get(protocol.suite)
    return protocol, path, hashlib.sha256(path.read_bytes()).hexdigest()
