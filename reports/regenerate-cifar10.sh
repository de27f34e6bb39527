#!/usr/bin/env bash
# Regenerates the CIFAR-10 leaderboard in reports/cifar10-resnet20/ (suite cifar10-resnet20: real
# CIFAR-10, ResNet-20, bf16, seeds 0 1 2) at equal cost, speedup targets 2x and 4x:
#   S2: l1norm, random, taylor, slimming, magnitude; l1norm finetuned at LR 1e-3 (0:0.001,2:0.0001)
#       beside the protocol's 1e-2 (0:0.01,2:0.001), for the same 4 epochs, at 4x;
#   SX-B: l1norm against its Scratch-B (the pruned runs are S2's computations: trained once).
# S2 (and the LR row) seed by seed first, then SX-B seed by seed. Runs resume from their checkpoints
# and finished runs are cache hits, so a part can be killed and run again.
# Trained in parts: SEEDS="1" trains only seed 1 (about two hours of 2 CPU cores a seed on an Intel
# Xeon with AMX, four on an AMD EPYC with bf16 units, torch 2.14; the Scratch-B runs are most of
# it; a CPU without bf16 units emulates the suite's bf16 at about half an hour an epoch). Each part
# verifies its store, exports the records of its runs (everything but the weights, with the verdict
# of `bench verify`) into reports/cifar10-resnet20/records/, and the report is written from all the
# records there: the parts' stores need not survive. Exports add up; a run recorded twice must be the
# same result.
# A part that did not get to a seed's Scratch-B baseline: SCRATCH=4 SEEDS="0" trains it later (with
# the seed's base and l1norm run again: the baseline's computation is the pruned architecture, not
# the base's weights) and exports the baseline, so the seed's recorded base and pruned runs stay as
# they were even where another CPU's numbers differ; the seed's SX-B pruned run too where no part
# recorded it (seed 1 at 4x), but only when it trained bit-identical to its recorded S2 computation
# (the same weights' sha256 and accuracy: likely on the CPU kind that trained the seed, for seed 1 an
# AMD EPYC with bf16 units, not an AVX2-only one); otherwise it says so and leaves it out (`bench
# export` would refuse it: a pruned run is recorded only beside the base weights it started from, a
# computation with one result).
# The store argument is then required.
# Trained through torch.compile (--compile: the same runs and ids; faster on CPU, where the thin
# layers are memory-bound and the compiled kernels fuse them).
# Usage: bash reports/regenerate-cifar10.sh DATA_ROOT [STORE]
#   DATA_ROOT holds cifar-10-batches-py/ (torchvision's batches) or cifar10/{train,test}/<class>/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bash reports/regenerate-cifar10.sh DATA_ROOT [STORE]" >&2; exit 2; }
common=(--suite cifar10-resnet20 --data-root "$1" --compile); [ $# -ge 2 ] && common+=(--store "$2")
bench=bench; [ -x .venv/bin/bench ] && bench=.venv/bin/bench   # the README's virtual environment
records=reports/cifar10-resnet20/records
if [ -n "${SCRATCH:-}" ]; then
  [ $# -ge 2 ] || { echo "SCRATCH=$SCRATCH needs a STORE: bash reports/regenerate-cifar10.sh DATA_ROOT STORE" >&2; exit 2; }
  for seed in ${SEEDS:?SCRATCH=$SCRATCH needs SEEDS, e.g. SEEDS=\"0\"}; do
    $bench run --protocol SX-B "${common[@]}" --seeds "$seed" --speedup "$SCRATCH" --method l1norm
  done
  # the finished scratch baselines of those seeds in this store, by run id, and their unrecorded SX-B
  # pruned runs that trained bit-identical to a recorded run (see above)
  ids=$(SEEDS="$SEEDS" python3 -c 'import json, os, pathlib, sys
seeds = {int(s) for s in os.environ["SEEDS"].split()}
recorded = pathlib.Path(sys.argv[2], "runs")
results = set()
for run in recorded.iterdir() if recorded.is_dir() else ():
    if (run / "metrics.json").is_file():
        m = json.loads((run / "metrics.json").read_text())
        results.add((m.get("model_sha256"), m.get("test_acc")))
for run in sorted(pathlib.Path(sys.argv[1], "runs").iterdir()):
    spec = run / "spec.json"
    if spec.is_file() and (run / "metrics.json").is_file():
        s, m = json.loads(spec.read_text()), json.loads((run / "metrics.json").read_text())
        if s.get("seed") not in seeds:
            continue
        if s.get("kind") == "scratch":
            print(run.name)
        elif s.get("kind") == "pruned" and s.get("protocol", "").endswith("/SX-B") and not (recorded / run.name).exists():
            if (m.get("model_sha256"), m.get("test_acc")) in results:
                print(run.name)
            else:
                seed = s.get("seed")
                print(f"not exported: SX-B run {run.name[:12]} of seed {seed} trained to other weights "
                      "than its recorded computation on this CPU", file=sys.stderr)' "$2" "$records")
  [ -n "$ids" ] || { echo "no finished scratch baseline of seeds $SEEDS in $2" >&2; exit 1; }
  $bench verify --data-root "$1" --store "$2" $ids
  $bench export --suite cifar10-resnet20 --out "$records" --store "$2" $ids
  $bench report --suite cifar10-resnet20 --out reports/cifar10-resnet20 --store "$records"
  exit 0
fi
for seed in ${SEEDS:-0 1 2}; do
  $bench run --protocol S2 "${common[@]}" --seeds "$seed" \
    --method l1norm --method random --method taylor --method slimming --method magnitude
  $bench run --protocol S2 "${common[@]}" --seeds "$seed" --speedup 4 --method 'l1norm:retrain_lr="0:0.001,2:0.0001"'
done
for seed in ${SEEDS:-0 1 2}; do
  $bench run --protocol SX-B "${common[@]}" --seeds "$seed" --method l1norm
done
store=(); [ $# -ge 2 ] && store=(--store "$2")
$bench verify --data-root "$1" ${store[@]+"${store[@]}"}   # re-derive every run: the records carry the verdicts
$bench export --suite cifar10-resnet20 --out "$records" ${store[@]+"${store[@]}"}
$bench report --suite cifar10-resnet20 --out reports/cifar10-resnet20 --store "$records"
