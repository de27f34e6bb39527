"""Method code out of the training process: the planner the harness asks for everything a method
decides, and the divisions.

Closed division (the default): every method, built-in or plug-in, is imported and run only in a
planning worker (`prunebench.planning_worker`), a fresh interpreter spawned once and reused for
every plan. It is handed a copy of the weights and the training split, never the test split, and
answers with data: the catalogue, validated settings, declared choices and penalty, plans and
intents. Built-in methods plan in a worker of their own, so a plug-in cannot stand in for one.
With bubblewrap (`bwrap`) the worker runs sandboxed: no network, nothing writable but its own
temporary folder, the data roots hidden. Where bubblewrap cannot run, `--sandbox auto` runs the
built-ins unsandboxed but refuses a plug-in: only `--sandbox off` gives one the user's rights.

Open division (`--division open`): methods run inside the training process, the only way to run
code of their own in the loop (`Method.regularizer`). Every run of an open grid says so, and the
harness fingerprints the model around every call into method code and records what changed.

Compute spent in method code is not training the harness counts, so it is measured: the CPU
seconds of the worker's process tree (threads, children and daemons left behind included), read
from /proc by the harness, not reported by the worker; each request is charged what the tree
spent since the last reply, so work done in the background between requests is charged to the
next, and every request to the method it names (a plug-in's worker serves its methods alone). In
the open division, the training process's CPU time during each call into method code. Every run
records the CPU seconds its method's code spent since the method's last run was recorded (the
grid's planning on untrained weights included), and every table names them.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from prunebench._registry import did_you_mean
from prunebench.config import MethodSpec, Protocol, Rounds, canonical
from prunebench.errors import ProtocolViolation, UserError
from prunebench.penalties import Penalty
from prunebench.targets import TargetRule

if TYPE_CHECKING:
    import torch
    from torch import nn

    from prunebench.data import Split
    from prunebench.method import Choices
    from prunebench.pruning import PruningPlan

DIVISIONS = ("closed", "open")
SANDBOX_MODES = ("auto", "on", "off")
MAX_MESSAGE = 8 << 30  # a reply larger than this is not a plan


# --- the wire: length-prefixed torch files, decoded weights-only (data, never code) ---------

def write_message(out: IO[bytes], message: dict[str, Any]) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(message, buffer)
    data = buffer.getvalue()
    out.write(struct.pack("<Q", len(data)))
    out.write(data)
    out.flush()


def read_message(source: IO[bytes]) -> dict[str, Any] | None:
    """The next message, or None at the end of the stream. Decoded with torch's weights-only
    unpickler: tensors, numbers, strings and containers only."""
    import torch

    head = source.read(8)
    if len(head) < 8:
        return None
    (size,) = struct.unpack("<Q", head)
    if size > MAX_MESSAGE:
        raise ValueError(f"a message of {size} bytes")
    data = source.read(size)
    if len(data) < size:
        return None
    message = torch.load(io.BytesIO(data), weights_only=True)
    if not isinstance(message, dict):
        raise ValueError(f"a message of type {type(message).__name__}")
    return message


# --- what the harness learns about a method ------------------------------------------------

@dataclass(frozen=True)
class MethodInfo:
    """A method as the catalogue describes it (data; the code stays in the worker)."""

    name: str
    description: str
    granularity: str
    needs_data: bool
    prune_phase: bool
    hooks: tuple[str, ...]
    from_scratch: bool
    own_code_in_loop: bool
    penalty: str
    code: str
    settings: tuple[tuple[str, str, str], ...]  # (name, default, description)
    origin: str = "built-in"  # or the plug-in it came from


@dataclass(frozen=True)
class Declared:
    """What a method declares for one protocol: its choices, penalty, rewind and (for a scratch
    baseline) the source method whose architecture it trains."""

    choices: Choices
    penalty: Penalty | None
    rewind: int | None
    source: MethodSpec | None = None
    target_rule: TargetRule = field(default_factory=TargetRule)  # how its plans are checked against a target
    rounds: Rounds | None = None  # iterative pruning: the rounds the harness runs (None: one shot)


@dataclass
class PlanInputs:
    """Everything a plan is computed from besides the method and its target."""

    arch: str
    num_classes: int
    input_shape: tuple[int, int, int]
    seed: int
    batch_size: int
    data: Split | None = None
    data_key: str = ""
    intent: PruningPlan | None = None
    protect: dict[str, Any] = field(default_factory=dict)  # the protocol's protected layers (Protect, as JSON)


def _malformed(name: str, what: str) -> UserError:
    return UserError(f"method {name!r}: its planning worker returned a malformed {what}; a method returns a "
                     "PruningPlan of kept filters or boolean masks.")


def plan_from_reply(name: str, data: Any) -> PruningPlan:
    """A plan from a worker's reply, checked to be plain data of the right shape."""
    import torch

    from prunebench.pruning import PruningPlan

    try:
        keep, masks = data["keep"], data["masks"]
        assert isinstance(keep, dict) and isinstance(masks, dict)
        assert all(isinstance(k, str) and isinstance(v, (list, tuple)) and all(type(i) is int for i in v)
                   for k, v in keep.items())
        assert all(isinstance(k, str) and isinstance(v, torch.Tensor) and v.dtype == torch.bool
                   for k, v in masks.items())
        return PruningPlan(keep={k: tuple(v) for k, v in keep.items()}, masks=masks)
    except (AssertionError, KeyError, TypeError, ValueError):
        raise _malformed(name, "plan") from None


class Planner:
    """Everything the harness asks of methods. `division` says where their code runs."""

    division = "closed"
    sandboxed = False
    _cpu: dict[str, float] | None = None  # method -> CPU seconds its code spent on this planner's requests
    _unmeasured = False  # this OS does not say

    def cpu_seconds(self, name: str) -> float | None:
        """CPU seconds method `name`'s code has spent on this planner's requests (None: this OS
        does not say)."""
        return None if self._unmeasured else (self._cpu or {}).get(name, 0.0)

    def _charge(self, name: str, seconds: float | None) -> None:
        if seconds is None:
            self._unmeasured = True
            return
        self._cpu = {**(self._cpu or {}), name: (self._cpu or {}).get(name, 0.0) + seconds}

    def catalogue(self) -> dict[str, MethodInfo]:
        raise NotImplementedError

    def _ask(self, name: str, request: dict[str, Any]) -> Any:
        raise NotImplementedError

    def info(self, name: str) -> MethodInfo:
        methods = self.catalogue()
        if name not in methods:
            raise UserError(f"unknown method {name!r}.{did_you_mean(name, sorted(methods))} "
                            f"Valid names: {', '.join(sorted(methods)) or '(none)'}.")
        return methods[name]

    def resolve(self, text: str) -> tuple[MethodInfo, MethodSpec]:
        """A method as given on the command line (`NAME[:KEY=VALUE,...]`): its catalogue entry and
        its spec, settings validated (defaults dropped, so equal settings give equal run ids)."""
        from prunebench.method import parse_method

        name, raw = parse_method(text)
        info = self.info(name)
        reply = self._ask(name, {"op": "settings", "method": name, "settings": json.dumps(raw)})
        try:
            settings = json.loads(reply)
            assert isinstance(settings, dict)
            return info, MethodSpec(name=name, settings=settings)
        except (AssertionError, TypeError, ValueError):
            raise _malformed(name, "settings") from None

    def declare(self, mspec: MethodSpec, protocol: Protocol) -> Declared:
        from pydantic import TypeAdapter, ValidationError

        from prunebench.method import Choices

        reply = self._ask(mspec.name, {"op": "declare", "method": mspec.name, "settings": json.dumps(mspec.settings),
                                       "protocol": canonical(protocol)})
        if reply.get("altered"):
            before, after = reply["altered"]
            raise ProtocolViolation(protocol.setup, f"protocol is read-only (method {mspec.name!r} altered it)",
                                    before, after)
        try:
            choices = Choices.model_validate_json(reply["choices"])
            penalty = TypeAdapter(Penalty).validate_json(reply["penalty"]) if reply["penalty"] else None
            rewind = reply["rewind"]
            assert rewind is None or type(rewind) is int
            rule = TargetRule.model_validate_json(reply["target_rule"])
            rounds = Rounds.model_validate_json(reply["rounds"]) if reply.get("rounds") else None
            source = None
            if reply["source"] is not None:
                name, settings, code = reply["source"]
                source = MethodSpec(name=name, settings=json.loads(settings), code=code)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()[:3])
            raise UserError(f"method {mspec.name!r} declared choices the harness cannot accept: {problems}.") from None
        except (AssertionError, KeyError, TypeError, ValueError):
            raise _malformed(mspec.name, "declaration") from None
        return Declared(choices, penalty, rewind, source, rule, rounds)

    def plan(self, mspec: MethodSpec, model: nn.Module, inputs: PlanInputs) -> PruningPlan:
        return plan_from_reply(mspec.name, self._ask_plan("plan", mspec, model, inputs))

    def intent(self, mspec: MethodSpec, model: nn.Module, inputs: PlanInputs) -> PruningPlan | None:
        reply = self._ask_plan("intent", mspec, model, inputs)
        return None if reply is None else plan_from_reply(mspec.name, reply)

    def _ask_plan(self, op: str, mspec: MethodSpec, model: nn.Module, inputs: PlanInputs) -> Any:
        from prunebench.planning_worker import plan_to_data

        if inputs.data is not None:
            self._hand_over(mspec.name, inputs.data, inputs.data_key)
        state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
        return self._ask(mspec.name, {
            "op": op, "method": mspec.name, "settings": json.dumps(mspec.settings), "ratio": mspec.ratio,
            "config": mspec.config, "arch": inputs.arch, "num_classes": inputs.num_classes,
            "input_shape": list(inputs.input_shape), "state": state, "seed": inputs.seed,
            "batch_size": inputs.batch_size, "data_key": inputs.data_key if inputs.data is not None else "",
            "intent": None if inputs.intent is None else plan_to_data(inputs.intent), "protect": inputs.protect,
        })

    def _hand_over(self, name: str, data: Split, key: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


# --- the closed division: workers --------------------------------------------------------------

def tree_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` and every process below it, their reaped
    children included (Linux /proc; None elsewhere). Under bubblewrap's own pid namespace a
    daemon the worker leaves behind is re-parented inside the tree, so it stays counted."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    try:
        entries = [e for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return None
    for entry in entries:
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                text = f.read()
        except OSError:
            continue  # it ended meanwhile (its parent's reaped-children time has it)
        fields = text[text.rindex(")") + 2:].split()  # after the command name, which may hold spaces
        parents[int(entry.name)] = int(fields[1])
        ticks[int(entry.name)] = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    if pid not in ticks:
        return None
    tree, frontier = {pid}, {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier and child not in tree}
        tree |= frontier
    return sum(ticks[p] for p in tree) / os.sysconf("SC_CLK_TCK")


def bwrap() -> str | None:
    return shutil.which("bwrap")


_PROBED: dict[str, str] = {}


def bwrap_problem() -> str:
    """Why bubblewrap cannot sandbox here ('' when it can): not installed, or it cannot start
    (e.g. user namespaces disabled). Probed once per process."""
    exe = bwrap()
    if exe is None:
        return "bubblewrap (`bwrap`) is not installed"
    if exe not in _PROBED:
        try:
            done = subprocess.run([exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-all",
                                   "--die-with-parent", "--", "true"], capture_output=True, text=True, timeout=30)
            _PROBED[exe] = "" if done.returncode == 0 else \
                f"bubblewrap cannot start here ({done.stderr.strip()[:200] or f'exit code {done.returncode}'})"
        except (OSError, subprocess.SubprocessError) as e:
            _PROBED[exe] = f"bubblewrap cannot start here ({e})"
    return _PROBED[exe]


def sandbox_wanted(mode: str) -> bool:
    """Whether planning runs sandboxed under `--sandbox MODE` (auto: where bubblewrap works)."""
    if mode not in SANDBOX_MODES:
        raise UserError(f"--sandbox {mode!r}: use auto, on or off.")
    if mode == "off":
        return False
    problem = bwrap_problem()
    if mode == "on" and problem:
        raise UserError(f"--sandbox on needs bubblewrap, but {problem}: apt-get install bubblewrap, or use "
                        "--sandbox off (planning then runs unsandboxed, and every run says so).")
    return not problem


def sandbox_command(tmp: Path, hidden: list[Path], readable: list[Path]) -> list[str]:
    """bwrap's arguments: the root file system read-only, no network (every namespace
    unshared), `hidden` paths replaced by empty folders, `readable` ones (the interpreter, the
    package, plug-in files) visible again, `tmp` the only writable folder."""
    exe = bwrap()
    assert exe is not None
    args = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-all", "--die-with-parent",
            "--new-session"]
    for path in hidden:
        if path.is_dir():
            args += ["--tmpfs", str(path)]
    for path in readable:
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    args += ["--bind", str(tmp), str(tmp), "--setenv", "TMPDIR", str(tmp), "--chdir", str(tmp)]
    return args + ["--"]


class Worker:
    """One planning worker process and its pipe."""

    def __init__(self, plugins: tuple[str, ...], entry_points: bool, sandbox: bool, hidden: tuple[Path, ...],
                 label: str) -> None:
        self.label, self.sandbox = label, sandbox
        self.tmp = Path(tempfile.mkdtemp(prefix="prunebench-planning-"))
        self.data_keys: set[str] = set()
        here = Path.cwd()  # a plug-in given as a module name is also looked for here, as `python -m` would
        command = [sys.executable, "-m", "prunebench.planning_worker", "--cwd", str(here), *plugins]
        if entry_points:
            command.append("--entry-points")
        if sandbox:
            import prunebench

            modules = [here / top for p in plugins if not p.endswith(".py") for top in
                       (p.split(".")[0], p.split(".")[0] + ".py")]  # only the plug-in, not the folder
            readable = [Path(sys.prefix), Path(sys.base_prefix), Path(prunebench.__file__).resolve().parent.parent,
                        *(Path(p) for p in sys.path if p), *(Path(p).resolve() for p in plugins if p.endswith(".py")),
                        *modules]
            command = sandbox_command(self.tmp, list(hidden), readable) + command
        # the worker is handed everything it may use: none of the harness's settings ($PRUNEBENCH_*)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRUNEBENCH_") and k != "PYTHONSTARTUP"}
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                        cwd=str(self.tmp) if sandbox else None)
        ready = self._receive()
        if "error" in ready:
            self.close()
            raise UserError(ready["message"])
        # the interpreter's start and the built-in imports are the harness's; method code's from here
        self.cpu_mark = tree_cpu_seconds(self.process.pid)
        self.charged: float | None = 0.0 if self.cpu_mark is not None else None

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        try:
            write_message(self.process.stdin, request)
        except (BrokenPipeError, OSError):
            raise self._died() from None
        reply = self._receive()
        self._charge()
        return reply

    def _charge(self) -> None:
        """Add what the worker's tree spent since the last reply to `charged`."""
        now = tree_cpu_seconds(self.process.pid)
        if now is None or self.cpu_mark is None or self.charged is None:
            self.charged = None
            return
        self.charged += max(now - self.cpu_mark, 0.0)
        self.cpu_mark = now

    def _receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        try:
            reply = read_message(self.process.stdout)
        except Exception as e:  # not a message of ours: the worker's output is not trusted
            self.close()
            raise UserError(f"the planning worker of {self.label} sent something that is not a reply ({e}); "
                            "method code must not write to the harness's pipe.") from None
        if reply is None:
            raise self._died()
        return reply

    def _died(self) -> UserError:
        code = self.process.poll()
        if code is None:
            self.process.kill()
            code = self.process.wait()
        from prunebench import signals

        signals.check()  # a Ctrl-C that also reached the worker
        hint = (" It ran sandboxed (bubblewrap): if bwrap cannot start here, use --sandbox off." if self.sandbox
                else "")
        return UserError(f"the planning worker of {self.label} exited (exit code {code}) while planning; its "
                         f"messages are above.{hint}")

    def hand_over(self, data: Split, key: str) -> None:
        """The training split, as tensors in a file in the worker's own folder (once per split)."""
        import torch

        from prunebench.data import TensorData

        if key in self.data_keys:
            return
        if not isinstance(data, TensorData):
            raise UserError("a method that needs training data to plan gets it handed over as tensors; data streamed "
                            "from image files (ImageFolder of large images) are not supported for planning yet.")
        path = self.tmp / f"train-{key}.pt"
        torch.save({"images": data.images.cpu(), "labels": data.labels.cpu(), "mean": data._mean.cpu(),
                    "std": data._std.cpu()}, path)
        reply = self.ask({"op": "data", "key": key, "path": str(path), "path_owned": True})
        if "error" in reply:
            raise UserError(f"the planning worker of {self.label} could not take the training split: "
                            f"{reply['message']}")
        self.data_keys = {key}

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                if self.process.stdin:
                    self.process.stdin.close()
                self.process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


_WORKERS: dict[tuple, Worker] = {}


@atexit.register
def close_workers() -> None:
    for worker in list(_WORKERS.values()):
        worker.close()
    _WORKERS.clear()


def _worker(plugins: tuple[str, ...], entry_points: bool, sandbox: bool, hidden: tuple[Path, ...]) -> Worker:
    """A live worker for this plug-in set, reused across grids of this process."""
    key = (plugins, entry_points, sandbox, hidden)
    worker = _WORKERS.get(key)
    if worker is None or worker.process.poll() is not None:
        label = ("the built-in methods" if not plugins and not entry_points else
                 f"plug-in {plugins[0]}" if plugins else "the installed plug-ins (entry points)")
        worker = _WORKERS[key] = Worker(plugins, entry_points, sandbox, hidden, label)
    return worker


# a plug-in is code the harness does not know: never run with the user's rights unasked
_UNSANDBOXED = (
    "{what} would run unsandboxed: {why}. Unsandboxed, a plug-in's code has your user's rights: it can rewrite "
    "the harness, the store and its own runs' records, so no table could trust its rows. Install bubblewrap "
    "(apt-get install bubblewrap), or pass --sandbox off to run it anyway (every run then records that its "
    "planning was not sandboxed, and tables say so).")


@dataclass
class ClosedPlanner(Planner):
    """Methods in planning workers: one for the built-ins alone, one for the plug-ins."""

    plugins: tuple[str, ...] = ()
    sandbox_mode: str = "auto"
    hidden: tuple[Path, ...] = ()
    _catalogue: dict[str, MethodInfo] | None = field(default=None, repr=False)
    _routes: dict[str, Worker] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.sandboxed = sandbox_wanted(self.sandbox_mode)

    def catalogue(self) -> dict[str, MethodInfo]:
        if self._catalogue is not None:
            return self._catalogue
        from prunebench.method import installed_plugins

        builtin = _worker((), False, self.sandboxed, self.hidden)
        methods = {info.name: info for info in self._list(builtin, "built-in")}
        builtins = dict(methods)
        routes = dict.fromkeys(methods, builtin)
        # each plug-in in a worker of its own (beside the built-ins it may build on), so no plug-in
        # can reach another's code or data; the installed entry points share one
        entry_points = installed_plugins()
        if (self.plugins or entry_points) and not self.sandboxed and self.sandbox_mode == "auto":
            raise UserError(_UNSANDBOXED.format(what=", ".join(
                [f"plug-in {p}" for p in self.plugins] + ["the installed plug-ins (entry points)"] * bool(entry_points)),
                why=bwrap_problem()))
        workers = [_worker((plugin,), False, self.sandboxed, self.hidden) for plugin in self.plugins]
        if entry_points:
            workers.append(_worker((), True, self.sandboxed, self.hidden))
        for plugin in workers:
            for info in self._list(plugin, plugin.label):
                if info.name in builtins:
                    if info.code != builtins[info.name].code:
                        raise UserError(f"{plugin.label} replaces the built-in method {info.name!r}; a plug-in "
                                        "registers methods under names of its own.")
                    continue
                if info.name in methods:
                    raise UserError(f"method {info.name!r} is registered by both {methods[info.name].origin} and "
                                    f"{plugin.label}; load one of them.")
                methods[info.name] = info
                routes[info.name] = plugin
        self._catalogue, self._routes = methods, routes
        return methods

    @staticmethod
    def _list(worker: Worker, origin: str) -> list[MethodInfo]:
        reply = worker.ask({"op": "catalogue"})
        if "error" in reply:
            raise UserError(f"{worker.label}: {reply['message']}")
        try:
            return [MethodInfo(
                name=str(m["name"]), description=str(m["description"]), granularity=str(m["granularity"]),
                needs_data=bool(m["needs_data"]), prune_phase=bool(m["prune_phase"]),
                hooks=tuple(str(h) for h in m["hooks"]), from_scratch=bool(m["from_scratch"]),
                own_code_in_loop=bool(m["own_code_in_loop"]), penalty=str(m["penalty"]), code=str(m["code"]),
                settings=tuple((str(s["name"]), str(s["default"]), str(s["description"])) for s in m["settings"]),
                origin=origin) for m in reply["ok"]]
        except (KeyError, TypeError):
            raise UserError(f"{worker.label} returned a malformed method catalogue.") from None

    def _ask(self, name: str, request: dict[str, Any]) -> Any:
        self.catalogue()
        worker = self._routes[name]
        before = worker.charged
        reply = worker.ask(request)
        self._charge(name, None if before is None or worker.charged is None else worker.charged - before)
        return _unwrap(name, reply)

    def _hand_over(self, name: str, data: Split, key: str) -> None:
        self.catalogue()
        worker = self._routes[name]
        before = worker.charged
        worker.hand_over(data, key)
        self._charge(name, None if before is None or worker.charged is None else worker.charged - before)


def _unwrap(name: str, reply: dict[str, Any]) -> Any:
    if "ok" in reply:
        return reply["ok"]
    kind = reply.get("error")
    if kind == "user":
        raise UserError(str(reply.get("message")))
    if kind == "violation":
        raise ProtocolViolation(reply["setup"], reply["rule"], reply["expected"], reply["actual"])
    raise UserError(f"method {name!r} failed while planning: {reply.get('message')}")


# --- the open division: method code in this process ------------------------------------------

@dataclass
class OpenPlanner(Planner):
    """Methods imported into the harness process (`--division open`)."""

    plugins: tuple[str, ...] = ()
    division = "open"

    def __post_init__(self) -> None:
        from prunebench.planning_worker import MethodHost

        self.host = MethodHost(self.plugins, entry_points=True)
        self._catalogue: dict[str, MethodInfo] | None = None

    def catalogue(self) -> dict[str, MethodInfo]:
        if self._catalogue is None:
            infos = ClosedPlanner._list(_Local(self.host), "open")  # type: ignore[arg-type]
            self._catalogue = {info.name: info for info in infos}
        return self._catalogue

    def _ask(self, name: str, request: dict[str, Any]) -> Any:
        before = time.process_time()
        try:
            return _unwrap(name, self.host.handle(request))
        finally:
            self._charge(name, time.process_time() - before)

    def _hand_over(self, name: str, data: Split, key: str) -> None:
        self.host.data = {key: data}

    def regularizer(self, mspec: MethodSpec, intent: PruningPlan | None):
        """The method's own loss term, called with the live model (open division only)."""
        from prunebench.method import METHODS

        method = METHODS.get(mspec.name)
        settings = method.settings(mspec.settings)
        return lambda model, step: method.regularizer(model, settings, step, intent)


@dataclass
class _Local:
    host: Any
    label: str = "the open division"

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.host.handle(request)


def method_modules() -> list[str]:
    """Modules of method code loaded in this process: built-in methods and plug-ins."""
    return sorted(name for name in sys.modules
                  if name.startswith(("prunebench.methods.", "prunebench_plugin_")) or name in _plugin_modules())


def _plugin_modules() -> set[str]:
    from prunebench import method

    return {p for p in getattr(method, "_loaded_plugins", set()) if not p.endswith(".py") and "/" not in p}


def fingerprint(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> tuple:
    """What a hook call must leave unchanged: every parameter and buffer (identity, storage,
    shape, and its values' sum and sum of squares, so writes through `.data` count too), the
    modules (type, settings, training flag, hooks), and the optimizer's parameter groups. Cheap
    next to a training step."""
    import torch

    with torch.no_grad():
        state = tuple((name, id(t), t.data_ptr(), tuple(t.shape), t.dtype,
                       *(torch.stack([t.double().sum(), t.double().pow(2).sum()]).tolist() if t.numel() else ()))
                      for name, t in [*model.named_parameters(), *model.named_buffers()])
    modules = tuple((name, type(m).__name__, m.extra_repr(), m.training, len(m._forward_hooks),
                     len(m._forward_pre_hooks), len(m._backward_hooks), len(getattr(m, "_backward_pre_hooks", {})),
                     len(getattr(m, "_state_dict_hooks", {})), tuple(sorted(vars(m).get("_modules", {}))))
                    for name, m in model.named_modules())
    groups = () if optimizer is None else tuple(
        (len(g["params"]), *(g.get(k) for k in ("lr", "momentum", "weight_decay", "nesterov", "dampening")))
        for g in optimizer.param_groups)
    return state, modules, groups


def changes(before: tuple, after: tuple) -> list[str]:
    """What differs between two fingerprints, in a few words each."""
    out = []
    (s0, m0, g0), (s1, m1, g1) = before, after
    if s0 != s1:
        names0 = {e[0]: e for e in s0}
        names1 = {e[0]: e for e in s1}
        added = sorted(set(names1) - set(names0))
        changed = sorted(n for n in set(names0) & set(names1) if names0[n] != names1[n])
        if added or set(names0) - set(names1):
            out.append(f"parameters or buffers added/removed: {', '.join(added[:3]) or '-'}")
        if changed:
            out.append(f"parameters or buffers changed in place: {', '.join(changed[:3])}")
    if m0 != m1:
        out.append("module structure, settings or hooks changed")
    if g0 != g1:
        out.append("optimizer settings changed")
    return out
