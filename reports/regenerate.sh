#!/usr/bin/env bash
# Regenerates the leaderboard in reports/ from runs of the default suite (fmnist-smallcnn, real
# Fashion-MNIST, the suite's 3 seeds). Finished runs are cache hits: a second call only re-renders.
# Usage: bash reports/regenerate.sh [STORE]   (default: $PRUNEBENCH_STORE or the user cache)
set -euo pipefail
cd "$(dirname "$0")/.."
store=(); [ $# -ge 1 ] && store=(--store "$1")
bench=bench; [ -x .venv/bin/bench ] && bench=.venv/bin/bench   # the README's virtual environment
for ratio in 0.3 0.5 0.7; do
  $bench run --protocol S2 --method l1norm --method random --method magnitude --method taylor \
    --ratio "$ratio" ${store[@]+"${store[@]}"}
done
for protocol in SX-A SX-B; do
  for ratio in 0.3 0.5; do
    $bench run --protocol "$protocol" --method l1norm --method random --ratio "$ratio" ${store[@]+"${store[@]}"}
  done
done
$bench report --suite fmnist-smallcnn --out reports ${store[@]+"${store[@]}"}
