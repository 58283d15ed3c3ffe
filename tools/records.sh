#!/usr/bin/env bash
# Make (or resume) the Fashion-MNIST records of chapters 3-6 on a 2-core CPU: two training processes of one
# thread each share the arms, then a last call writes the records from the run cache. Every finished run is
# cached at once under benchmarks/results/fashion_mnist_quick_cpu/runs/, so a stopped job loses at most the
# runs in flight and the same command resumes. Run it from a clean checkout of a commit (the runs record it).
#   nohup bash tools/records.sh > records.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
C="$PY benchmarks/converge.py"
OUT=${OUT:-benchmarks/results/fashion_mnist_quick_cpu}
flags=(--out "$OUT" --cache "$OUT/runs")
{
  $C ch3 ch5 ch6 "${flags[@]}" --arms resnet,nonlocal_resnet,se_resnet,cbam_resnet,se_resnet_open,cbam_resnet_open
  $C ch4 "${flags[@]}" --arms resnet
  $C ch6 "${flags[@]}" --arms sasa_resnet
} > "${LOG_A:-/tmp/records-a.log}" 2>&1 &
a=$!
{
  $C ch6 "${flags[@]}" --arms vit,coatnet,botnet,swin
  $C ch4 "${flags[@]}" --arms vit
} > "${LOG_B:-/tmp/records-b.log}" 2>&1 &
b=$!
wait $a
wait $b
$C all "${flags[@]}" --force   # every run is in the cache now: this only assembles the four records
