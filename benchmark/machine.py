"""Where a run ran: floating-point kernels differ between CPUs and GPUs, so the same run id can
give slightly different numbers on two machines. Every run records this, and tables say when
their rows come from different machines."""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path
from typing import Any


@cache
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe(device: Any) -> dict[str, Any]:
    """The machine a run trains on: torch version, device, CPU (or GPU) model and threads."""
    import torch

    gpu = torch.cuda.get_device_name(device) if getattr(device, "type", str(device)) == "cuda" else None
    return {"torch": torch.__version__, "device": str(device), "cpu": _cpu_model(), "gpu": gpu,
            "threads": torch.get_num_threads(), "python": platform.python_version(), "os": platform.system()}


def label(machine: dict[str, Any] | None) -> str:
    """One line naming a machine, e.g. 'AMD EPYC 7B13, 2 threads, torch 2.14.1' (what tables compare)."""
    if not machine:
        return "not recorded"
    where = machine.get("gpu") or machine.get("cpu") or "unknown"
    threads = "" if machine.get("gpu") else f", {machine.get('threads')} threads"
    return f"{where}{threads}, torch {machine.get('torch')}"
