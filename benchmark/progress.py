"""Progress of a grid: runs done / running / queued, and each running run's current epoch.

The sequential executor and the Ray driver report through the same object, so a long grid reads
the same either way: one line when a run starts or ends, one line per finished epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from prunebench.trace import TraceRow

Log = Callable[[str], None]


@dataclass
class GridProgress:
    total: int
    log: Log
    done: int = 0
    running: dict[str, str] = field(default_factory=dict)  # run id -> label
    started: float = field(default_factory=time.monotonic)
    counting: bool = True  # False in a Ray worker: the driver counts and names runs, the worker its epochs

    def counts(self) -> str:
        return f"[{self.done}/{self.total} done, {len(self.running)} running, {self.queued} queued]"

    @property
    def queued(self) -> int:
        return max(self.total - self.done - len(self.running), 0)

    def start(self, run_id: str, label: str, resumed: bool = False) -> None:
        self.running[run_id] = label
        if self.counting:
            self.log(f"{self.counts()} {'resuming' if resumed else 'training'} {label} (run {run_id[:12]})")

    def finish(self, run_id: str, message: str | None = None) -> None:
        """A run ended (trained, or found done in the store: a cache hit)."""
        self.running.pop(run_id, None)
        self.done += 1
        if message and self.counting:
            self.log(f"{self.counts()} {message}")

    def epoch(self, label: str, row: TraceRow, epochs: int) -> None:
        self.log(f"  {label}: {row.phase} epoch {row.epoch + 1}/{epochs}, train acc {row.train_acc:.2f}%, "
                 f"test acc {row.test_acc:.2f}%, {row.seconds:.1f} s")

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
