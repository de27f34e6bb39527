"""What every benchmark script prints besides its table: the machine, the settings, the JSON file."""

from __future__ import annotations

import json
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import torch


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str | torch.device = "cpu") -> dict[str, Any]:
    """The machine a figure was measured on: accelerator (if used), CPU, torch, threads."""
    device = torch.device(device)
    out: dict[str, Any] = {"cpu": cpu_model(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        out = {"gpu": torch.cuda.get_device_name(device), **out}
    return out


def settings(args: Any) -> dict[str, Any]:
    """The parsed options (paths as text), and the command line that gave them."""
    values = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return {**values, "command": shlex.join([Path(sys.executable).name, *sys.argv])}


def describe(facts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in facts.items() if k != "command")


def report(figures: Any, machine_facts: dict[str, Any], args: Any) -> None:
    """Print the machine and settings lines; write everything to `args.json` if given."""
    print(f"machine: {describe(machine_facts)}")
    print(f"settings: {describe(settings(args))}")
    if getattr(args, "json", None):
        payload = {"machine": machine_facts, "settings": settings(args), "figures": figures}
        Path(args.json).write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.json}")
