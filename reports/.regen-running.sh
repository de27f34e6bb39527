#!/usr/bin/env bash
# Regenerates the CIFAR-10 leaderboard in reports/cifar10-resnet20/ (suite cifar10-resnet20: real
# CIFAR-10, ResNet-20, bf16, seeds 0 1 2) at equal cost, speedup targets 2x and 4x:
#   S2: l1norm, random, taylor, slimming, magnitude; l1norm finetuned at LR 1e-3 (0:0.001,2:0.0001)
#       beside the protocol's 1e-2 (0:0.01,2:0.001), for the same 4 epochs, at 4x;
#   SX-B: l1norm against its Scratch-B (the pruned runs are S2's computations: trained once).
# S2 (and the LR row) seed by seed first, then SX-B seed by seed. Runs resume from their checkpoints
# and finished runs are cache hits, so a part can be killed and run again.
# Trained in parts: SEEDS="1" trains only seed 1 (about two hours of 2 CPU cores a seed: Intel Xeon
# with AMX, torch 2.14; the Scratch-B runs are most of it). Each part verifies its store, exports
# the records of its runs (everything but the weights, with the verdict of `bench verify`) into
# reports/cifar10-resnet20/records/, and the report is written from all the records there: the
# parts' stores need not survive. Exports add up; a run recorded twice must be the same result.
# Trained through torch.compile (--compile: the same runs and ids; faster on CPU, where the thin
# layers are memory-bound and the compiled kernels fuse them).
# Usage: bash reports/regenerate-cifar10.sh DATA_ROOT [STORE]
#   DATA_ROOT holds cifar-10-batches-py/ (torchvision's batches) or cifar10/{train,test}/<class>/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bash reports/regenerate-cifar10.sh DATA_ROOT [STORE]" >&2; exit 2; }
common=(--suite cifar10-resnet20 --data-root "$1" --compile); [ $# -ge 2 ] && common+=(--store "$2")
bench=bench; [ -x .venv/bin/bench ] && bench=.venv/bin/bench   # the README's virtual environment
for seed in ${SEEDS:-0 1 2}; do
  $bench run --protocol S2 "${common[@]}" --seeds "$seed" \
    --method l1norm --method random --method taylor --method slimming --method magnitude
  $bench run --protocol S2 "${common[@]}" --seeds "$seed" --speedup 4 --method 'l1norm:retrain_lr="0:0.001,2:0.0001"'
done
for seed in ${SEEDS:-0 1 2}; do
  $bench run --protocol SX-B "${common[@]}" --seeds "$seed" --method l1norm
done
store=(); [ $# -ge 2 ] && store=(--store "$2")
records=reports/cifar10-resnet20/records
$bench verify --data-root "$1" ${store[@]+"${store[@]}"}   # re-derive every run: the records carry the verdicts
$bench export --suite cifar10-resnet20 --out "$records" ${store[@]+"${store[@]}"}
$bench report --suite cifar10-resnet20 --out reports/cifar10-resnet20 --store "$records"
