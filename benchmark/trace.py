"""What a run actually did, one row per epoch, as recorded by the training loop."""

from __future__ import annotations

import csv
import io
import math

from pydantic import BaseModel, ConfigDict, Field

from prunebench.flops import training_flops


class TraceRow(BaseModel):
    # NaN and infinities are written as JSON's NaN/Infinity and read back as such
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    phase: str = Field(description="pretrain, prune, retrain or scratch")
    epoch: int = Field(description="epoch within the phase, 0-based")
    lr: float = Field(description="the LR the optimizer used at every step of the epoch")
    samples: int = Field(description="training samples seen in the epoch")
    steps: int = Field(description="optimizer steps in the epoch")
    batch_size: int = Field(description="largest mini-batch of the epoch")
    momentum: float = Field(description="optimizer momentum, read from the optimizer")
    weight_decay: float = Field(description="optimizer weight decay, read from the optimizer")
    nesterov: bool = Field(description="optimizer nesterov flag, read from the optimizer")
    augment: str = Field(description="augmentation the loop applied")
    pad: int | None = Field(None, description="zero padding of the random crop the loop applied (None: a trace "
                            "written before prunebench recorded it)")
    precision: str = Field("fp32", description="arithmetic the loop ran forward and backward in (fp32, bf16)")
    macs: int = Field(description="forward MACs of the model trained in this epoch")
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    seconds: float = Field(description="wall time of the epoch")

    @property
    def train_flops(self) -> int:
        return training_flops(self.samples, self.macs)


class Trace(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    rows: tuple[TraceRow, ...] = ()

    def append(self, row: TraceRow) -> Trace:
        return Trace(rows=self.rows + (row,))

    def phase(self, name: str) -> list[TraceRow]:
        return [r for r in self.rows if r.phase == name]

    @property
    def epochs(self) -> int:
        return len(self.rows)

    @property
    def train_flops(self) -> int:
        return sum(r.train_flops for r in self.rows)

    def divergence(self, num_classes: int) -> str | None:
        """Why this training diverged, or None: its training loss rose past 100 x ln(classes)
        (a uniform guess costs ln(classes)) and it ends at chance level (at most 1.5 x 100/classes
        % test accuracy). A run like that is stored as failed, not ranked at chance."""
        if not self.rows:
            return None
        worst, last = max(self.rows, key=lambda r: r.train_loss), self.rows[-1]
        chance = 100.0 / num_classes
        if worst.train_loss > 100 * math.log(num_classes) and last.test_acc <= 1.5 * chance:
            return (f"diverged: the training loss reached {worst.train_loss:.3g} in {worst.phase} epoch "
                    f"{worst.epoch + 1}, and the run ends at chance level ({last.test_acc:.2f}% test accuracy; "
                    f"chance is {chance:.2f}%)")
        return None

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(TraceRow.model_fields))
        writer.writeheader()
        for row in self.rows:
            writer.writerow(row.model_dump())
        return out.getvalue()
