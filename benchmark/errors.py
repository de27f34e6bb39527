"""Errors a user can cause and fix; the CLI prints them as one paragraph, without a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: the message says what was wrong, where, and what to do."""


class DatasetNotFound(UserError):
    """A dataset is not where the harness looked."""


class DamagedFile(UserError):
    """A store file that cannot be read: truncated, overwritten, or of another format."""

    def __init__(self, path: object, why: str) -> None:
        self.path, self.why = path, why
        super().__init__(f"{path} is damaged ({why}). Run the same `bench run` again to retrain the run, or delete "
                         "the file.")


class TrainingFailed(Exception):
    """A run whose training went wrong: its loss became NaN or infinite, or it diverged and ended
    at chance level. Recorded as failed with this reason, never ranked; the grid goes on."""


class ProtocolViolation(Exception):
    """A run did something its protocol forbids (named setup, rule, expected and actual value)."""

    def __init__(self, setup: str, rule: str, expected: object, actual: object) -> None:
        self.setup, self.rule, self.expected, self.actual = setup, rule, expected, actual
        self.recorded: str | None = None  # the run id whose record says so (None: stopped before any run)
        super().__init__(f"{setup}: rule {rule!r} broken: expected {expected}, got {actual}")

    def recorded_as(self, run_id: str) -> ProtocolViolation:
        self.recorded = run_id
        return self

    def __reduce__(self):  # pickled whole (Ray, multiprocessing): rebuilt from its four fields
        return _rebuild, (self.setup, self.rule, self.expected, self.actual, self.recorded)


def _rebuild(setup: str, rule: str, expected: object, actual: object, recorded: str | None) -> ProtocolViolation:
    v = ProtocolViolation(setup, rule, expected, actual)
    v.recorded = recorded
    return v
