"""An open-division cheat whose accuracy does not come from its model file alone: a forward hook
adds the logits of a model the harness does not know about (a hidden teacher)."""

import copy

from torch import nn

from prunebench.method import Method, PhaseSettings, register_method
from prunebench.methods.l1norm import L1Norm, L1Settings


@register_method
class TeacherHook(Method):
    name = "cheat-teacher-hook"
    Settings = PhaseSettings
    prune_phase = True

    def plan(self, model, target, settings, ctx):
        return L1Norm().plan(model, target, L1Settings(), ctx)

    def regularizer(self, model, settings, step, intent):
        if step == 0:
            teacher = copy.deepcopy(model)
            for p in teacher.parameters():
                nn.init.normal_(p, std=1.0)
            model.register_forward_hook(lambda module, inputs, output: output + 10 * teacher(inputs[0]).detach())
        return None
