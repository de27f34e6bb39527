"""ThiNet (Luo et al., "ThiNet: A Filter Level Pruning Method for Deep Neural Network
Compression", ICCV 2017).

A layer's filters are judged by the *next* layer: on sampled training activations, each input
channel c of the next layer contributes x̂_c to a sampled output value y = Σ_c x̂_c (plus bias).
ThiNet greedily grows the set T of channels to remove, each time adding the channel that keeps
Σ_samples (Σ_{c∈T} x̂_c)² smallest, until T holds all but the layer's kept count; the filters
producing those channels are pruned. Counts per layer follow the uniform ratio (Li et al.'s
rounding). Samples: `locations` random output positions per image of `batches` mini-batches.
Each layer is scored on the unpruned base model (the paper prunes and fine-tunes layer by layer;
here the harness's retraining follows one cut).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch_pruning as tp
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from prunebench.errors import UserError
from prunebench.method import Method, MethodSettings, PruneContext, Target, register_method
from prunebench.pruning import PruningPlan


class ThiNetSettings(MethodSettings):
    model_config = ConfigDict(frozen=True, extra="forbid")

    batches: int = Field(4, ge=1, description="mini-batches of training images sampled")
    locations: int = Field(10, ge=1, description="output positions sampled per image (the paper's 10)")


def greedy_remove(contrib: torch.Tensor, n_remove: int) -> list[int]:
    """ThiNet's greedy selection: `contrib` is (samples, channels) of per-channel contributions to
    the next layer's sampled outputs; returns the channels to remove, in the order chosen, each
    step adding the channel that minimises ||Σ_{c∈T} contrib[:, c]||²."""
    removed: list[int] = []
    running = torch.zeros(contrib.shape[0], dtype=contrib.dtype, device=contrib.device)
    available = torch.ones(contrib.shape[1], dtype=torch.bool, device=contrib.device)
    for _ in range(n_remove):
        cost = ((running[:, None] + contrib) ** 2).sum(0)
        cost[~available] = float("inf")
        c = int(torch.argmin(cost))  # the first of equal costs: deterministic
        removed.append(c)
        available[c] = False
        running = running + contrib[:, c]
    return removed


def contributions(consumer: nn.Module, x: torch.Tensor, locations: int, generator: torch.Generator) -> torch.Tensor:
    """Per-input-channel contributions (samples, channels) to `locations` random output values per
    image of `consumer` (a conv, or a linear layer fed one value per channel) on input `x`."""
    n = x.shape[0]
    if isinstance(consumer, nn.Conv2d):
        if consumer.groups != 1:
            raise UserError("thinet needs the next layer to be an ungrouped conv")
        w = consumer.weight  # (O, C, kh, kw)
        cols = F.unfold(x, consumer.kernel_size, consumer.dilation, consumer.padding, consumer.stride)  # (N, C*k, L)
        o = torch.randint(w.shape[0], (n, locations), generator=generator).to(x.device)
        loc = torch.randint(cols.shape[2], (n, locations), generator=generator).to(x.device)
        patches = cols[torch.arange(n, device=x.device)[:, None], :, loc]  # (N, locations, C*k)
        patches = patches.reshape(n * locations, w.shape[1], -1)
        kernels = w.flatten(2)[o.flatten()]  # (N*locations, C, k)
        return (patches * kernels).sum(2)
    if isinstance(consumer, nn.Linear):
        features = x.flatten(1) if x.dim() > 2 else x
        o = torch.randint(consumer.out_features, (n, locations), generator=generator).to(x.device)
        return (consumer.weight[o.flatten()] * features.repeat_interleave(locations, 0))
    raise UserError(f"thinet cannot reconstruct the output of a {type(consumer).__name__}")


def next_layer(model: nn.Module, conv: nn.Module, input_shape: tuple[int, ...]) -> nn.Module:
    """The one layer that consumes `conv`'s output channels (ThiNet is defined for that case)."""
    param = next(model.parameters())
    model.eval()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(2, *input_shape,
                                                                                     device=param.device))
    group = graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=[0])
    consumers = [dep.target.module for dep, _ in group
                 if dep.handler in (tp.prune_conv_in_channels, tp.prune_linear_in_channels)]
    if len(consumers) != 1:
        raise UserError(f"thinet needs each pruned conv to feed exactly one layer; one feeds {len(consumers)}")
    return consumers[0]


@register_method
class ThiNet(Method):
    name = "thinet"
    description = "ThiNet (Luo et al. 2017): greedy channel removal minimising the next layer's reconstruction error"
    Settings = ThiNetSettings
    needs_data = True

    def plan(self, model: nn.Module, target: Target, settings: BaseModel, ctx: PruneContext) -> PruningPlan:
        assert isinstance(settings, ThiNetSettings)
        counts = target.keep_counts(ctx.arch, model)
        modules = dict(model.named_modules())
        consumers = {name: next_layer(model, modules[name], ctx.input_shape) for name in counts}
        sampled: dict[str, list[torch.Tensor]] = {name: [] for name in counts}

        def sample(name: str, x: torch.Tensor) -> None:  # on the fly: no activations are kept
            sampled[name].append(contributions(consumers[name], x.detach(), settings.locations, ctx.generator))

        hooks = [consumer.register_forward_pre_hook(lambda module, args, name=name: sample(name, args[0]))
                 for name, consumer in consumers.items()]
        model.eval()
        try:
            with torch.no_grad():
                for x, _ in ctx.batches(settings.batches):
                    model(x)
        finally:
            for h in hooks:
                h.remove()
        keep = {}
        for name, k in counts.items():
            channels = modules[name].out_channels
            contrib = torch.cat(sampled[name])
            if contrib.shape[1] != channels:
                raise UserError(f"thinet: the layer after {name!r} does not read its {channels} channels one to one")
            removed = set(greedy_remove(contrib.double(), channels - k))
            keep[name] = tuple(c for c in range(channels) if c not in removed)
        return PruningPlan(keep=keep)
