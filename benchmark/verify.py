"""Checks of a run's files before the store's word is taken for it: a cache hit is verified
(metrics, spec, trace, plan, and the model against the sha256 the loop recorded), damage is set
aside and retrained, a swapped model is a violation. Never a traceback, never a wrong number."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prunebench._atomic import disk_error, sha256_file
from prunebench.config import RunSpec
from prunebench.errors import DamagedFile, ProtocolViolation
from prunebench.pruning import PruningPlan
from prunebench.store import RunFiles
from prunebench.train import trusted

# what loading a truncated or overwritten torch file raises: unpickling arbitrary bytes can raise
# almost anything (IndexError, TypeError, UnicodeDecodeError, ...), so any Exception; the line that
# sets the file aside names the exception
UNREADABLE = (Exception,)


@dataclass
class RunChecks:
    """The checks, with what they need: the run files, the setup (for violations), a log, how a
    run is labelled, and how a violation is recorded."""

    files: RunFiles
    setup: str
    log: Callable[[str], None]
    label: Callable[[RunSpec], str]
    record_violation: Callable[[RunSpec, Path, ProtocolViolation], None]

    def stored(self, spec: RunSpec, repair: bool) -> dict[str, Any] | None:
        """The metrics of a finished run whose files are intact, else None. With `repair` (only
        under the run's lock): a finished run whose files are damaged (spec, metrics, trace or
        plan unreadable, model missing or unreadable) has them set aside, says so, and trains
        again; a model file that reads but is not the one the loop wrote is recorded and raised
        as a `ProtocolViolation`; a checkpoint left by a kill after the run finished is removed."""
        run_id, directory = spec.run_id, self.files.run_dir(spec.run_id)
        try:
            metrics = self.files.metrics(run_id)
            if metrics is None:
                return None
            if not isinstance(metrics.get("model_sha256"), str):
                raise DamagedFile(directory / "metrics.json", "it records no model sha256")
            if self.files.spec(run_id) != spec:
                raise DamagedFile(directory / "spec.json", "it does not match the run's id")
            if self.files.trace(run_id) is None:  # every finished run has its trace
                raise DamagedFile(directory / "trace.json", "missing")
            if self.plan_file(directory) is None and spec.kind == "pruned":  # and every pruned run its plan
                raise DamagedFile(directory / "plan.json", "missing")
            model = directory / "model.pt"
            if not model.is_file():
                raise DamagedFile(model, "missing")
            actual = sha256_file(model)
            if actual != metrics.get("model_sha256"):
                try:
                    torch.load(model, map_location="cpu", weights_only=True)
                except UNREADABLE as e:  # truncated or overwritten: damage, not a swap
                    raise DamagedFile(model, f"unreadable: {type(e).__name__}") from None
                raise ProtocolViolation(self.setup, "model file sha256 (recorded by the loop)",
                                        metrics.get("model_sha256"), actual)
        except DamagedFile as damaged:
            if not repair:
                return None
            aside = self.files.set_aside(run_id)
            self.log(f"{self.label(spec)} (run {run_id[:12]}): {damaged.path.name} is damaged ({damaged.why}); "
                     f"its files are kept in {aside} and the run is retrained")
            return None
        except ProtocolViolation as v:
            if not repair:
                return None
            self.record_violation(spec, directory, v)
            raise
        for leftover in [*directory.glob("checkpoint*.pt"), *directory.glob("checkpoint*.pt.sha256")]:  # a kill
            # between metrics.json and the clean-up
            try:
                leftover.unlink(missing_ok=True)  # the run is finished: nobody trains from it any more
            except OSError:
                pass  # a read-only store: harmless, the metrics decide
        return metrics

    def readable(self, spec: RunSpec, read: Callable[[str], Any], name: str) -> Any:
        """A run's record (`failed.json`, `violation.json`) or None; a damaged one is renamed
        `<name>.damaged` with a line saying so, and the run is treated as not recorded."""
        try:
            return read(spec.run_id)
        except DamagedFile as damaged:
            path = self.files.run_dir(spec.run_id) / name
            try:
                path.rename(path.with_name(name + ".damaged"))
            except OSError as e:
                raise disk_error(path, e) from None
            self.log(f"{self.label(spec)} (run {spec.run_id[:12]}): {name} is damaged ({damaged.why}); set aside as "
                     f"{name}.damaged, the run goes on as if it had none")
            return None

    @staticmethod
    def plan_file(directory: Path) -> PruningPlan | None:
        """The plan stored in a run directory; a damaged one is a `DamagedFile`."""
        try:
            return PruningPlan.load(directory)
        except UNREADABLE as e:  # JSON, pickle or zip errors of a truncated file
            raise DamagedFile(directory / "plan.json", f"unreadable: {type(e).__name__}") from None

    def discard_damaged(self, spec: RunSpec, directory: Path) -> None:
        """An unfinished run's checkpoints and plan that cannot be read are set aside (the run
        then starts that part again): a kill or a full disk must not jam the store."""
        for checkpoint in directory.glob("checkpoint*.pt"):
            # a checkpoint is unpickled only if the loop wrote it: a truncated one, like a forged
            # one, no longer has the sha256 the loop recorded, and is never loaded
            if not trusted(checkpoint):
                checkpoint.rename(checkpoint.with_name(checkpoint.name + ".damaged"))
                self.log(f"{self.label(spec)}: {checkpoint.name} is damaged or was not written by the training loop "
                         f"(its sha256 is not the one the loop recorded); set aside as {checkpoint.name}.damaged, "
                         "training that part again")
        for sub in (directory, directory / "intent", *sorted(directory.glob("rounds/*"))):
            try:
                self.plan_file(sub)
            except DamagedFile as damaged:
                for name in ("plan.json", "masks.pt"):
                    if (sub / name).exists():
                        (sub / name).rename(sub / f"{name}.damaged")
                self.log(f"{self.label(spec)}: {damaged.path.relative_to(directory)} is damaged ({damaged.why}); "
                         "set aside, planning again")

