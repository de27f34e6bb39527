"""Cheating plug-ins: each tries to gain an advantage through code rather than a declared choice.
In the closed division they are refused or have no effect (the harness trains in another
process); in the open division they run, and the harness records what they changed.

Import-time patches (they act in whatever process imports this file): SGD steps at 10x the LR,
a global optimizer hook, and the harness's audit functions replaced by no-ops.
"""

import gc
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from torch import nn

import prunebench.audit
from prunebench.config import Protocol
from prunebench.data import TensorData
from prunebench.method import Choices, Method, MethodSettings, PhaseSettings, register_method
from prunebench.methods.l1norm import L1Norm

_step = torch.optim.SGD.step


def _fast_step(self, closure=None):
    for group in self.param_groups:
        group["lr"] = group["lr"] * 10
    try:
        return _step(self, closure)
    finally:
        for group in self.param_groups:
            group["lr"] = group["lr"] / 10


torch.optim.SGD.step = _fast_step
from torch.optim.optimizer import register_optimizer_step_post_hook  # noqa: E402

register_optimizer_step_post_hook(lambda opt, args, kwargs: None)
for _name in ("audit_phase", "audit_run", "audit_budget"):
    setattr(prunebench.audit, _name, lambda *args, **kwargs: None)


def l1_plan(model, target, ctx):
    return L1Norm().plan(model, target, L1Norm().settings({}), ctx)


class Cheat(Method):
    Settings = MethodSettings

    def plan(self, model, target, settings, ctx):
        return l1_plan(model, target, ctx)


@register_method
class PatchedAudit(Cheat):
    """Retrains one epoch longer, counting on the patched audit (and the 10x SGD step)."""

    name = "cheat-patched"

    def choices(self, protocol, settings):
        return Choices(retrain=protocol.retrain.model_copy(update={"epochs": protocol.retrain.epochs + 1}))


@register_method
class TrainsWhatItCuts(Cheat):
    """plan() trains the model it is handed, and every other module it can reach, on noise."""

    name = "cheat-trains-model"

    def plan(self, model, target, settings, ctx):
        plan = l1_plan(model, target, ctx)  # chosen on the honest weights, then the weights "improve"
        for module in [model, *(o for o in gc.get_objects() if isinstance(o, nn.Module))]:
            params = [p for p in module.parameters() if p.requires_grad]
            if params:
                with torch.no_grad():
                    for p in params:
                        p.mul_(1.5)
        return plan


@register_method
class AltersProtocol(Cheat):
    """plan() finds protocol objects through the garbage collector and doubles their retraining."""

    name = "cheat-alters-protocol"

    def plan(self, model, target, settings, ctx):
        for obj in gc.get_objects():
            if isinstance(obj, Protocol):
                object.__setattr__(obj.retrain, "epochs", obj.retrain.epochs * 2)
        return l1_plan(model, target, ctx)


@register_method
class OverwritesData(Cheat):
    """plan() overwrites the training split in place (every copy it can reach)."""

    name = "cheat-overwrites-data"
    needs_data = True

    def plan(self, model, target, settings, ctx):
        plan = l1_plan(model, target, ctx)
        for obj in [ctx.data, *(o for o in gc.get_objects() if isinstance(o, TensorData))]:
            obj.images.zero_()
            obj.labels.zero_()
        return plan


def _burn(seconds: float, clock=time.thread_time) -> None:
    start = clock()
    while clock() - start < seconds:
        sum(range(10_000))


BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0:\n    sum(range(10_000))"


@register_method
class HiddenCompute(Cheat):
    """Searches for its plan with compute the harness never trains with, out of sight: a second of
    CPU in another thread and a second in a child process, each time it plans (as a supermask
    trained inside plan() would; the plan itself is l1norm's)."""

    name = "cheat-hidden-compute"

    def plan(self, model, target, settings, ctx):
        thread = threading.Thread(target=_burn, args=(1.0,))
        thread.start()
        subprocess.run([sys.executable, "-c", BURN], check=True)
        thread.join()
        return l1_plan(model, target, ctx)


@register_method
class HiddenDaemon(Cheat):
    """The same out of sight, in a daemon: a child process starts a detached grandchild that spends
    a second of CPU and exits unreaped by anything of the plug-in's; plan() waits for its result."""

    name = "cheat-hidden-daemon"

    def plan(self, model, target, settings, ctx):
        done = Path(tempfile.mkdtemp()) / "done"
        daemon = f"import sys\n{BURN}\nopen(sys.argv[1], 'w').close()"
        subprocess.run([sys.executable, "-c", "import subprocess, sys; subprocess.Popen([sys.executable, '-c', "
                        f"{daemon!r}, {str(done)!r}], start_new_session=True)"], check=True)
        while not done.exists():
            time.sleep(0.05)
        time.sleep(0.3)  # its exit
        return l1_plan(model, target, ctx)


class OwnLoop(Cheat):
    """Base of the cheats that hide work in their own regulariser (open division only)."""

    Settings = PhaseSettings
    prune_phase = True


@register_method
class BnMomentum(OwnLoop):
    name = "cheat-bn-momentum"

    def regularizer(self, model, settings, step, intent):
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.5
        return None


@register_method
class ForwardHook(OwnLoop):
    name = "cheat-forward-hook"

    def regularizer(self, model, settings, step, intent):
        if step == 0:
            model.register_forward_hook(lambda module, inputs, output: output * 1.0)
        return None


@register_method
class ExtraParameter(OwnLoop):
    name = "cheat-extra-parameter"

    def regularizer(self, model, settings, step, intent):
        if step == 0:
            model.register_parameter("hidden", nn.Parameter(torch.zeros(1)))
        return None


@register_method
class ExtraSteps(OwnLoop):
    name = "cheat-extra-steps"

    def regularizer(self, model, settings, step, intent):
        for p in model.parameters():
            p.data.mul_(0.999)  # the live weights updated behind autograd's back, as extra steps would
        return None


@register_method
class ScaledLoss(OwnLoop):
    """Returns 9x the task loss, read from the training loop's frame: a 10x LR in disguise."""

    name = "cheat-scaled-loss"

    def regularizer(self, model, settings, step, intent):
        import inspect

        frame = inspect.currentframe()
        while frame is not None and "loss" not in frame.f_locals:
            frame = frame.f_back
        return 9 * frame.f_locals["loss"] if frame is not None else None


@register_method
class WiderLayer(OwnLoop):
    """Swaps the classifier for a wider one: the MACs counted at the start of the phase never see it."""

    name = "cheat-wider-layer"

    def regularizer(self, model, settings, step, intent):
        if step == 0:
            for name, module in model.named_children():
                if isinstance(module, nn.Sequential):
                    module.append(nn.Identity())  # the structure changes; the function does not
                    break
        return None
