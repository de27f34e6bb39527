#!/usr/bin/env bash
# Regenerates the leaderboard in reports/ from runs of the default suite (fmnist-smallcnn, real
# Fashion-MNIST, the suite's 3 seeds) at equal cost: speedup targets 2x and 4x (dense MACs /
# pruned MACs; effective MACs for magnitude), each method's ratio found by the harness's search.
# Finished runs are cache hits: a second call only re-renders.
# Usage: bash reports/regenerate.sh [STORE]   (default: $PRUNEBENCH_STORE or the user cache)
set -euo pipefail
cd "$(dirname "$0")/.."
store=(); [ $# -ge 1 ] && store=(--store "$1")
bench=bench; [ -x .venv/bin/bench ] && bench=.venv/bin/bench   # the README's virtual environment
for speedup in 2 4; do
  $bench run --protocol S2 --method l1norm --method random --method taylor --method slimming --method magnitude \
    --speedup "$speedup" ${store[@]+"${store[@]}"}
  $bench run --protocol SX-B --method l1norm --speedup "$speedup" ${store[@]+"${store[@]}"}
done
$bench report --suite fmnist-smallcnn --out reports ${store[@]+"${store[@]}"}
