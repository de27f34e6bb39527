"""Deliberately unfair methods that take an advantage by *declaring* it (their `choices`); each
plans like l1norm. Loaded by the planning worker as a plug-in file."""

from prunebench.config import Recipe
from prunebench.method import Choices, Method, MethodSettings, register_method
from prunebench.schedule import LRSchedule
from prunebench.methods.l1norm import L1Norm


class Unfair(Method):
    Settings = MethodSettings

    def plan(self, model, target, settings, ctx):
        return L1Norm().plan(model, target, L1Norm().settings({}), ctx)


def _method(name, choose):
    register_method(type(name, (Unfair,), {"name": name, "choices": lambda self, protocol, settings: choose(protocol)}))
    return name


def _retrain(**change):
    return lambda p: Choices(retrain=p.retrain.model_copy(update=change))


def _own_base(p):
    # the synthetic suite's base recipe (tests/conftest.py) with one epoch more
    return Choices(base=Recipe(epochs=4, lr="0:0.1,2:0.01", batch_size=64, augment="flip"))


def _mutate(p):
    p.ratios.append(0.9)  # the protocol handed to a method is a copy, but altering it is caught
    return Choices()


_method("unfair-extra-epoch", lambda p: Choices(retrain=p.retrain.model_copy(update={"epochs": p.retrain.epochs + 1})))
_method("unfair-higher-lr", lambda p: Choices(retrain=p.retrain.model_copy(
    update={"lr": p.retrain.lr.model_copy(update={"stages": [(0, 0.1)]})})))
_method("unfair-no-weight-decay", _retrain(weight_decay=0.0))
_method("unfair-momentum", _retrain(momentum=0.5))
_method("unfair-more-samples", _retrain(samples_per_epoch=2 * 640))
_method("unfair-own-base", _own_base)
_method("unfair-long-prune", lambda p: Choices(prune=p.prune.model_copy(update={"epochs": p.prune.epochs + 1})
                                               if p.prune else None))
_method("unfair-over-budget", lambda p: Choices(retrain=p.retrain.model_copy(update={"epochs": p.retrain.epochs + 2})))
_method("unfair-mutates-protocol", _mutate)
# retrains in fp32 whatever the protocol says: breaks a bf16 protocol's fixed precision
_method("test-fp32", _retrain(precision="fp32"))
# retrains one epoch longer than the protocol says: breaks S3.1's fixed retraining epochs
_method("test-longer", lambda p: Choices(retrain=p.retrain.model_copy(update={"epochs": p.retrain.epochs + 1})))


def _own_base_with_phase(self, protocol, settings):
    # its own (longer-trained) base, and a pruning phase of its own: the base rule must hold before
    # such a run could take another run's training of that phase
    return Choices(base=_own_base(protocol).base, prune=protocol.retrain.model_copy(update={"lr": LRSchedule(stages=[(0, 0.01)])}))


register_method(type("unfair-own-base-phase", (Unfair,), {"name": "unfair-own-base-phase", "prune_phase": True,
                                                          "choices": _own_base_with_phase}))
