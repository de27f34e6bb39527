"""Running a grid in parallel with Ray (`bench run --executor ray`; `pip install 'prunebench[ray]'`).

The driver (the `bench` process) walks the grid as the sequential executor does, but hands each
run whose dependencies are finished to a Ray task instead of training it: base models first
(nothing else is ready at the start), then every pruned run once its base is stored, then every
scratch baseline once the run whose architecture it copies is stored. Tasks ask for
`cpus_per_run` CPUs and `gpus_per_run` GPUs (fractions pack several small runs on one GPU).

A task trains in its own process through the same `Harness.execute` (the run's lock, its
checkpoints, its audit), writing only the run's directory; the index writes it would have made
come back to the driver with the result, and the driver alone writes the SQLite index. Killing
the driver loses nothing: finished runs are in the store, started ones resume from their last
checkpoint when the command is run again (a task still running elsewhere holds its run's lock,
so the rerun waits for it rather than training it twice).

On a cluster (`--ray-address`) every node must see the store at the same path (a shared
filesystem), as the tasks read base models and write runs there.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prunebench import signals
from prunebench.errors import ProtocolViolation, UserError

if TYPE_CHECKING:
    from prunebench.runner import Borrowed, Harness, Planned

POLL_SECONDS = 30.0  # a progress line at least this often while runs train


class Executor:
    """How a grid's runs are executed: each run of `harness.grid(...)` through `harness.execute`,
    returning (run, metrics or None for a failed run) pairs in any order."""

    def run(self, harness: Harness, methods: list[str], seeds: list[int], ratio: float | None,
            config: str | None, borrow: Borrowed | None,
            speedup: float | None = None) -> list[tuple[Planned, dict[str, Any] | None]]:
        raise NotImplementedError


class SequentialExecutor(Executor):
    """One run after another in this process (the default): the grid is walked live, so each
    pruned run is planned on its trained base."""

    def run(self, harness: Harness, methods: list[str], seeds: list[int], ratio: float | None,
            config: str | None, borrow: Borrowed | None,
            speedup: float | None = None) -> list[tuple[Planned, dict[str, Any] | None]]:
        return [(job, harness.execute(job.spec, job.start, job.budget))  # type: ignore[arg-type]
                for job in harness.grid(methods, seeds, ratio, config, live=True, borrow=borrow, speedup=speedup)]


@dataclass
class RayExecutor(Executor):
    address: str | None = None  # None: start a local Ray instance on this machine
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    num_cpus: int | None = None  # of a local instance (default: every core)

    def run(self, harness: Harness, methods: list[str], seeds: list[int], ratio: float | None,
            config: str | None, borrow: Borrowed | None,
            speedup: float | None = None) -> list[tuple[Planned, dict[str, Any]]]:
        ray = _import_ray()
        harness.store_root = Path(harness.store_root).resolve()  # the workers' working directory differs
        self._connect(ray)
        train = ray.remote(_train_job).options(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
                                               max_retries=0)
        progress = harness.grid_progress
        assert progress is not None
        results: dict[str, tuple[Planned, dict[str, Any]]] = {}
        pending: dict[Any, Planned] = {}  # Ray object ref -> the run its task trains
        failure: BaseException | None = None
        driver_device = harness.device
        harness.set_device("cpu")  # the driver only plans; the GPUs are the workers'
        try:
            while True:
                if failure is None:
                    failure = self._submit(harness, train, methods, seeds, ratio, config, borrow, results, pending,
                                           speedup)
                if not pending:
                    break
                finished, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
                if not finished:
                    running = "; ".join(sorted(progress.running.values()))
                    harness.log(f"{progress.counts()} {progress.elapsed()} elapsed; training: {running}")
                for ref in finished:
                    job = pending.pop(ref)
                    status, value, records = ray.get(ref)  # an unexpected error (a bug) raises here
                    for spec, state, metrics, violation, reason in records:
                        harness.store.index(spec, state, metrics, violation=violation, failure=reason)
                    label = harness.label(job.spec)
                    if status == "failed":  # its training went wrong: recorded, in no table; the grid goes on
                        results[job.spec.run_id] = (job, None)
                        progress.finish(job.spec.run_id, f"{label} (run {job.spec.run_id[:12]}) FAILED: {value}")
                        continue
                    if status == "done":
                        results[job.spec.run_id] = (job, value)
                        progress.finish(job.spec.run_id, f"done {label}: test acc {value['test_acc']:.2f}% "
                                                         f"({value['seconds']:.0f} s)")
                        continue
                    error = (ProtocolViolation(*value).recorded_as(job.spec.run_id) if status == "violated"
                             else UserError(value))
                    progress.finish(job.spec.run_id, f"{label}: {error}")
                    failure = failure or error  # let the runs in flight finish, then stop
        finally:
            harness.set_device(driver_device)
        if failure is not None:
            raise failure
        return list(results.values())

    def _submit(self, harness: Harness, train: Any, methods: list[str], seeds: list[int], ratio: float | None,
                config: str | None, borrow: Borrowed | None, results: dict, pending: dict,
                speedup: float | None = None) -> BaseException | None:
        """Walk the grid once: record cache hits, start a task for every run that is ready and
        not started. The walk is lazy, so a cache hit makes its dependents ready in the same walk."""
        progress = harness.grid_progress
        assert progress is not None
        started = {job.spec.run_id for job in pending.values()}
        for job in harness.grid(methods, seeds, ratio, config, live=True, borrow=borrow, speedup=speedup,
                                 ready=lambda run_id: run_id in results):
            rid = job.spec.run_id
            if rid in results or rid in started:
                continue
            if harness.files.failure(rid) is not None:
                results[rid] = (job, harness.execute(job.spec, job.start, job.budget))  # says so, records it
                continue
            if (metrics := harness.stored(job.spec, repair=False)) is not None:  # intact (a task repairs, locked)
                harness.store.index(job.spec, "done", metrics)
                results[rid] = (job, metrics)
                progress.finish(rid)
                continue
            if (violation := harness.files.violation(rid)) is not None:
                return violation
            pending[train.remote(_dumps(harness, job), self.gpus_per_run > 0)] = job
            started.add(rid)
            progress.start(rid, harness.label(job.spec))
        return None

    def _connect(self, ray: Any) -> None:
        if ray.is_initialized():
            return
        # workers import this package and read the store; they inherit the driver's environment
        env = {"env_vars": {k: v for k, v in os.environ.items() if k.startswith(("PRUNEBENCH_", "MALLOC_"))}}
        try:
            if self.address:
                ray.init(address=self.address, runtime_env=env, log_to_driver=True)
            else:
                ray.init(num_cpus=self.num_cpus, runtime_env=env, include_dashboard=False, log_to_driver=True)
            signals.restore()  # ray.init installs its own SIGTERM handler (sys.exit) over bench's
        except ConnectionError as e:
            raise UserError(f"cannot reach the Ray cluster at {self.address!r}: {e}. Start it with "
                            "`ray start --head` on the head node, or leave out --ray-address for a local "
                            "instance.") from None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'prunebench[ray]' (or pip install ray).") from None
    return ray


def _dumps(harness: Harness, job: Planned) -> bytes:
    """The job as bytes (cloudpickle: the run's start is a closure over the harness). It holds
    no method code: the task's harness asks a planning worker of its own (closed division)."""
    from ray import cloudpickle

    return cloudpickle.dumps((harness, job))


# a worker process keeps its datasets between tasks: (dataset, data root, device) -> (data, fingerprint)
_DATA: dict[tuple, Any] = {}


def _train_job(payload: bytes, gpu: bool) -> tuple[str, Any, list[tuple]]:
    """A Ray task: train one run (or find it done) and return ("done", metrics), ("failed", the
    reason its training failed), ("violated", its fields) or ("error", a user error's message),
    with the index records the run made."""
    import torch
    from ray import cloudpickle

    from prunebench.progress import GridProgress

    # method code is not loaded here: the task's harness asks its own planning worker (closed
    # division), or loads the plug-ins itself when it first needs them (open division)
    harness, job = cloudpickle.loads(payload)
    device = "cuda" if gpu and torch.cuda.is_available() else "cpu"  # Ray set CUDA_VISIBLE_DEVICES to ours
    harness.set_device(device)
    key = (harness.suite.dataset, str(harness.data_root), device)
    if key in _DATA:
        harness.use_data(_DATA[key])
    harness.grid_progress = GridProgress(1, lambda m: print(m, file=sys.stderr, flush=True), counting=False)
    with harness.recording() as records:
        try:
            metrics = harness.execute(job.spec, job.start, job.budget)
            if metrics is None:
                return "failed", harness.files.failure(job.spec.run_id), records
            return "done", metrics, records
        except ProtocolViolation as v:
            return "violated", (v.setup, v.rule, v.expected, v.actual), records
        except UserError as e:
            return "error", str(e), records
        finally:
            if (loaded := harness.loaded_data()) is not None:
                _DATA[key] = loaded
