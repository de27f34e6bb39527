"""Suites and protocols are data: YAML files under `protocols/<suite>/`, validated on load.

`suite.yaml` defines a suite (dataset, architecture, base recipe); every other file there is
one setup's protocol, named after the setup (`SX-B.yaml`). A user's own protocol is any YAML
file passed by path; a user's own suites live in folders of the same layout named in
$PRUNEBENCH_PROTOCOLS (several separated by ':').
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from prunebench._registry import Registry, did_you_mean
from prunebench.config import Protocol, Suite
from prunebench.errors import UserError

DEFAULT_SUITE = "fmnist-smallcnn"
PROTOCOLS_ENV = "PRUNEBENCH_PROTOCOLS"


def protocols_roots() -> list[Path]:
    """The shipped protocols folder, then the user's folders from $PRUNEBENCH_PROTOCOLS."""
    extra = [Path(p).expanduser() for p in os.environ.get(PROTOCOLS_ENV, "").split(os.pathsep) if p]
    for folder in extra:
        if not folder.is_dir():
            raise UserError(f"${PROTOCOLS_ENV} names {folder}, which is not a folder: name folders that hold "
                            "<suite>/suite.yaml and <suite>/<setup>.yaml files, separated by ':'.")
    return [Path(str(resources.files("prunebench.protocols"))), *extra]


def read_model(path: Path, model: type[BaseModel]) -> BaseModel:
    """Load a YAML file into a config model; errors name the file, the field and what was expected."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start}: {raw[e.start:e.start + 1]!r}); save it as "
                        "UTF-8 YAML.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(yaml_error(path, text, e)) from None
    except RecursionError:
        raise UserError(f"{path}: its YAML is nested too deeply to read; a protocol file is a few levels of "
                        "fields.") from None
    except ValueError as e:  # e.g. an integer of thousands of digits (Python's int conversion limit)
        raise UserError(f"{path}: a value is too long to read ({e}). Fix the file and run again.") from None
    return validate_data(data, model, str(path))


def yaml_error(path: Path, text: str, error: yaml.YAMLError) -> str:
    """A YAML syntax error as a compiler would print it: file:line:column, what is wrong, and the
    offending line with a caret under the column."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context, start = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and start is not None:
        context += f" that starts at line {start.line + 1}, column {start.column + 1}"
    what = f"{problem}" + (f" ({context})" if context else "")
    if mark is None:
        return f"{path}: not valid YAML: {what}. Fix the file and run again."
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    return (f"{path}:{mark.line + 1}:{mark.column + 1}: not valid YAML: {what}.\n"
            f"    {line}\n    {' ' * mark.column}^\nFix the file and run again.")


def validate_data(data: object, model: type[BaseModel], source: str) -> BaseModel:
    """Validate parsed YAML; any problem is a `UserError` naming `source` and each bad field."""
    if not isinstance(data, dict):
        raise UserError(f"{source} must hold a mapping of fields, found {type(data).__name__}.")
    if model is Protocol and "setup" not in data and {"dataset", "arch", "base"} & set(data):
        raise UserError(f"{source} is a suite file (dataset, architecture, base recipe), not a protocol: protocol "
                        "files sit beside it, one per setup (e.g. SX-B.yaml).")
    try:
        return model.model_validate(data)
    except RecursionError:
        raise UserError(f"{source}: nested too deeply to validate; a protocol file is a few levels of "
                        "fields.") from None
    except ValidationError as e:
        problems = "; ".join(
            f"field '{'.'.join(str(p) for p in err['loc']) or '(top level)'}': {err['msg']}"
            for err in e.errors()
        )
        raise UserError(f"{source}: {problems}. Fix the file and run again.") from None


def load_suites() -> Registry[Suite]:
    """Every suite of every protocols folder, read afresh (a handful of small files)."""
    suites: Registry[Suite] = Registry("suite")
    for root in protocols_roots():
        for path in sorted(root.glob("*/suite.yaml")):
            suite = read_model(path, Suite)
            assert isinstance(suite, Suite)
            if suite.name != path.parent.name:
                raise UserError(f"{path}: field 'name' is {suite.name!r} but the folder is {path.parent.name!r}.")
            if suite.name in suites:
                raise UserError(f"{path}: suite {suite.name!r} is defined twice; rename one of the folders.")
            suites.register(suite.name, suite)
    return suites


def list_protocols() -> list[tuple[str, str, Path]]:
    """(suite, setup, file) of every protocol in the protocols folders."""
    out = []
    for root in protocols_roots():
        for path in sorted(root.glob("*/*.yaml")):
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
    found = [p for su, setup, p in list_protocols() if su == suite and setup == name]
    if found:
        return found[0]
    valid = [s for su, s, _ in list_protocols() if su == suite]
    raise UserError(
        f"unknown protocol {name!r} for suite {suite!r}.{did_you_mean(name, valid)} "
        f"Valid names: {', '.join(valid) or '(none)'}; or pass a protocol file by path."
    )


def load_protocol(name: str, suite: str = DEFAULT_SUITE) -> tuple[Protocol, Path, str]:
    """The protocol, its file and the file's sha256 (provenance)."""
    path = protocol_path(name, suite)
    protocol = read_model(path, Protocol)
    assert isinstance(protocol, Protocol)
    suites = load_suites()
    if protocol.suite not in suites and (path.parent / "suite.yaml").is_file():
        raise UserError(f"{path}: suite {protocol.suite!r} is not known, though {path.parent / 'suite.yaml'} is "
                        f"beside the file: add its parent folder to ${PROTOCOLS_ENV} "
                        f"(export {PROTOCOLS_ENV}={path.parent.parent.resolve()}).")
    suite = suites.get(protocol.suite)
    if protocol.pf_epochs and protocol.pf_epochs[0] > suite.base.epochs:
        raise UserError(f"{path}: field 'pf': {protocol.pf} prunes at epoch {protocol.pf_epochs[0]}, but suite "
                        f"{suite.name!r} trains its base {suite.base.epochs} epochs; give P <= {suite.base.epochs}.")
    return protocol, path, hashlib.sha256(path.read_bytes()).hexdigest()
