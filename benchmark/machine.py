"""Where a run ran: floating-point kernels differ between CPUs and GPUs, so the same run id can
give slightly different numbers on two machines. Every run records this, and tables say when
their rows come from different machines.

A CPU's model name does not say which kernels ran: a cloud machine may call itself only "AMD
EPYC" on an AVX2 part and on an AVX-512 part, whose kernels sum in other orders (and whose bf16
arithmetic is native on one and emulated on the other). So the machine names the vector
instructions torch dispatches to, and the bf16 units, beside the model name."""

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


@cache
def cpu_kernels() -> str:
    """The CPU kernels torch runs here: the vector instructions it dispatches to (torch's own
    word: AVX2, AVX512, ...) and the units that do bf16 arithmetic natively, e.g. 'AVX512, AMX'."""
    import torch

    units = [name for name, probe in (("AVX512-BF16", "_is_avx512_bf16_supported"), ("AMX", "_is_amx_tile_supported"))
             if getattr(torch.cpu, probe, lambda: False)()]  # torch's probes (private, so looked up)
    return ", ".join([torch.backends.cpu.get_cpu_capability(), *units])


def native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (AVX512-BF16 or AMX); elsewhere torch
    emulates it, many times slower than fp32."""
    return "BF16" in cpu_kernels() or "AMX" in cpu_kernels()


def describe(device: Any) -> dict[str, Any]:
    """The machine a run trains on: torch version, device, CPU (or GPU) model, the CPU's kernels
    and threads."""
    import torch

    gpu = torch.cuda.get_device_name(device) if getattr(device, "type", str(device)) == "cuda" else None
    return {"torch": torch.__version__, "device": str(device), "cpu": _cpu_model(), "cpu_kernels": cpu_kernels(),
            "gpu": gpu, "threads": torch.get_num_threads(), "python": platform.python_version(),
            "os": platform.system()}


def label(machine: dict[str, Any] | None) -> str:
    """One line naming a machine, e.g. 'AMD EPYC [AVX2], 2 threads, torch 2.14.1' (what tables
    compare; a record from before kernels were recorded names the model alone)."""
    if not machine:
        return "not recorded"
    kernels = "" if machine.get("gpu") or not machine.get("cpu_kernels") else f" [{machine['cpu_kernels']}]"
    where = machine.get("gpu") or f"{machine.get('cpu') or 'unknown'}{kernels}"
    threads = "" if machine.get("gpu") else f", {machine.get('threads')} threads"
    return f"{where}{threads}, torch {machine.get('torch')}"
