"""The planning worker: the one process where method code is imported and run.

`python -m prunebench.planning_worker [PLUGIN ...]` imports the built-in methods (and the given
plug-ins, and installed entry-point plug-ins when any plug-in is given) and answers requests from
the harness on a private pipe: the method catalogue, validated settings, declared choices, plans
and intents. Requests and replies are data only (`prunebench.planning.encode`): the harness
decodes a reply with torch's weights-only loader, so a reply cannot run code in the harness.

`MethodHost` is the request handler itself; the open division runs it inside the harness process.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import traceback
from typing import Any

import torch
from pydantic import BaseModel

from prunebench.config import Protect, Protocol, Rounds, canonical
from prunebench.data import TensorData
from prunebench.errors import ProtocolViolation, UserError
from prunebench.method import (
    METHODS,
    Method,
    PruneContext,
    Target,
    load_builtin_methods,
    load_plugin,
    method_code,
)
from prunebench.models import ARCHS
from prunebench.pruning import PruningPlan
from prunebench.targets import TargetRule


class MethodHost:
    """Answers the harness's requests about methods, with method code in this process."""

    def __init__(self, plugins: tuple[str, ...] = (), entry_points: bool = False) -> None:
        load_builtin_methods(entry_points=entry_points)
        for plugin in plugins:
            load_plugin(plugin)
        self.data: dict[str, Any] = {}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        try:
            handler = getattr(self, f"op_{op}")
        except AttributeError:
            return {"error": "bug", "message": f"unknown request {op!r}"}
        try:
            return {"ok": handler(request)}
        except UserError as e:
            return {"error": "user", "message": str(e)}
        except ProtocolViolation as v:
            return {"error": "violation", "setup": v.setup, "rule": v.rule, "expected": str(v.expected),
                    "actual": str(v.actual)}
        except Exception as e:  # a method's own bug: one line for the user, the traceback on request
            if os.environ.get("PRUNEBENCH_DEBUG"):
                traceback.print_exc()
            return {"error": "bug", "message": f"{type(e).__name__}: {e}"}

    # --- requests ------------------------------------------------------------------------

    def op_catalogue(self, request: dict) -> list[dict]:
        out = []
        for name in METHODS.names():
            m = METHODS.get(name)
            fields = [{"name": k, "default": repr(f.default) if not f.is_required() else "(required)",
                       "description": f.description or ""} for k, f in m.Settings.model_fields.items()]
            try:
                penalty = m.penalty(m.Settings())
            except Exception:  # settings without defaults
                penalty = None
            out.append({
                "name": name, "description": m.description, "granularity": m.granularity,
                "needs_data": bool(m.needs_data), "prune_phase": bool(m.prune_phase),
                "hooks": [str(h) for h in m.hooks], "from_scratch": bool(m.from_scratch),
                "own_code_in_loop": type(m).runs_own_code_in_loop(),
                "penalty": penalty.kind if penalty is not None else "",
                "code": method_code(m), "settings": fields,
            })
        return out

    def _method(self, request: dict) -> tuple[Method, BaseModel]:
        method = METHODS.get(request["method"])
        return method, method.settings(json.loads(request["settings"]))

    def op_settings(self, request: dict) -> str:
        method, settings = self._method(request)
        return json.dumps(settings.model_dump(mode="json", exclude_defaults=True))

    def op_declare(self, request: dict) -> dict:
        method, settings = self._method(request)
        protocol = Protocol.model_validate_json(request["protocol"])
        before = canonical(protocol)
        chosen = method.choices(protocol, settings)
        penalty = method.penalty(settings)
        source = None
        if method.from_scratch:
            origin = METHODS.get(settings.source)
            raw = origin.settings(getattr(settings, "source_settings", {}))
            source = [origin.name, json.dumps(raw.model_dump(mode="json", exclude_defaults=True)), method_code(origin)]
        rewind = method.rewind_epoch(settings)
        rounds = method.rounds(settings)
        if rounds is not None and not isinstance(rounds, Rounds):
            raise UserError(f"method {method.name!r}: rounds() returned {type(rounds).__name__}, not Rounds")
        rule = method.target_rule(settings)
        if not isinstance(rule, TargetRule):
            raise UserError(f"method {method.name!r}: target_rule() returned {type(rule).__name__}, not a TargetRule")
        after = canonical(protocol)
        return {
            "choices": chosen.model_dump_json(),
            "altered": None if after == before else [_digest(before), _digest(after)], "penalty": penalty.model_dump_json() if penalty else "",
            "rewind": None if rewind is None else int(rewind), "source": source,
            "target_rule": rule.model_dump_json(), "rounds": rounds.model_dump_json() if rounds else "",
        }

    def op_data(self, request: dict) -> None:
        """The training split, handed over as tensors (the worker never sees the data root)."""
        if request["key"] not in self.data:
            saved = torch.load(request["path"], weights_only=True)
            data = TensorData.__new__(TensorData)
            data.images, data.labels = saved["images"], saved["labels"]
            data._mean, data._std = saved["mean"], saved["std"]
            data.channels_last, data.source = True, "handed to the planning worker"
            self.data = {request["key"]: data}  # one split at a time
            if request.get("path_owned"):
                os.unlink(request["path"])

    def _plan_inputs(self, request: dict, method: Method) -> tuple[torch.nn.Module, Target, PruneContext]:
        arch = ARCHS.get(request["arch"])
        model = arch.build(request["num_classes"], request["input_shape"][0])
        own = model.state_dict()
        # the architecture's own weights (the open division's model may carry what a hook attached)
        model.load_state_dict({k: v for k, v in request["state"].items() if k in own})
        target = Target(ratio=request["ratio"], config=request["config"],
                        protect=Protect.model_validate(request.get("protect") or {}))
        data = None
        if method.needs_data:
            held = self.data.get(request.get("data_key") or "")
            if held is None:
                raise UserError(f"method {method.name!r} needs training data to plan, but none was handed over")
            data = held.to(held.images.device)
            data.images, data.labels = held.images.clone(), held.labels.clone()  # a plan cannot spoil the next
        intent = request.get("intent")
        ctx = PruneContext(arch, tuple(request["input_shape"]), torch.Generator().manual_seed(request["seed"]),
                           data=data, batch_size=request["batch_size"],
                           intent=None if intent is None else plan_from_data(intent))
        return model, target, ctx

    def op_plan(self, request: dict) -> dict:
        method, settings = self._method(request)
        model, target, ctx = self._plan_inputs(request, method)
        plan = method.plan(model, target, settings, ctx)
        if not isinstance(plan, PruningPlan):
            raise UserError(f"method {method.name!r}: plan() returned {type(plan).__name__}, not a PruningPlan")
        return plan_to_data(plan)

    def op_intent(self, request: dict) -> dict | None:
        method, settings = self._method(request)
        model, target, ctx = self._plan_inputs(request, method)
        intent = method.intent(model, target, settings, ctx)
        if intent is not None and not isinstance(intent, PruningPlan):
            raise UserError(f"method {method.name!r}: intent() returned {type(intent).__name__}, not a PruningPlan")
        return None if intent is None else plan_to_data(intent)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plan_to_data(plan: PruningPlan) -> dict:
    return {"keep": {k: list(v) for k, v in plan.keep.items()}, "masks": dict(plan.masks)}


def plan_from_data(data: dict) -> PruningPlan:
    return PruningPlan(keep={k: tuple(v) for k, v in data["keep"].items()}, masks=data["masks"])


def serve(plugins: tuple[str, ...], entry_points: bool, cwd: str = "") -> None:
    """Answer requests on the pipe the harness gave (stdin/stdout at start) until it closes."""
    from prunebench.planning import read_message, write_message

    channel_in = os.fdopen(os.dup(0), "rb")
    channel_out = os.fdopen(os.dup(1), "wb")
    # method code that prints must not write into the channel: fd 1 becomes stderr, fd 0 empty
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the harness's to handle; it closes the pipe
    home = os.getcwd()
    try:
        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)  # the harness's folder: where a plug-in named as a module is also looked for
        host = MethodHost(plugins, entry_points)
        ready: dict[str, Any] = {"ok": {"pid": os.getpid()}}
    except UserError as e:
        host, ready = None, {"error": "user", "message": str(e)}
    finally:
        os.chdir(home)
    write_message(channel_out, ready)
    while host is not None:
        request = read_message(channel_in)
        if request is None:
            return
        write_message(channel_out, host.handle(request))


if __name__ == "__main__":
    args = sys.argv[1:]
    cwd = ""
    if args[:1] == ["--cwd"]:
        cwd, args = args[1], args[2:]
    entry = "--entry-points" in args
    serve(tuple(a for a in args if a != "--entry-points"), entry, cwd)
