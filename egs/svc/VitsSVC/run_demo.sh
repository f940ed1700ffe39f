#!/usr/bin/env bash
# The VitsSVC demo on real singing, on CPU, beside DiffComoSVC's (egs/svc/DiffComoSVC/run_demo.sh):
# the same data, stage-1 cache, pairs and metrics.
#   1. stage 1: DiffComoSVC's demo features (22.05 kHz, Whisper tiny.en, Parselmouth F0) plus the
#      waveforms VITS trains on
#   2. stage 2: the demo-size VITS, its decoder warm-started from the universal HiFi-GAN V1
#   3. stage 3: each held-out song of each singer into its own singer and into the next two, autoshifted
#   4. `cantor eval` (out/demo_vits/vits/metrics.tsv) and the main table (out/demo_vits/table.md)
# Usage: bash egs/svc/VitsSVC/run_demo.sh [--steps N] [--set K=V ...]
# Default 1500 steps, into ckpts/demo/demo_vits and out/demo_vits; --steps N (another N) into
# ckpts/demo/demo_vits_N and out/demo_vits_N. A re-run continues the training from its newest
# checkpoint.
set -euo pipefail
steps=1500 suffix=""
if [ "${1:-}" = --steps ]; then
    [ "$2" = "$steps" ] || suffix=_$2
    steps=$2
    shift 2
fi
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
cfg=egs/svc/VitsSVC/exp_config_demo.json
run=(bash egs/svc/VitsSVC/run.sh --config "$cfg")
out=out/demo_vits$suffix expt=demo_vits$suffix
processed=data/demo/processed/gtsinger_demo
source egs/svc/demo_lib.sh
start_timings
whisper_weights
timed stage1_preprocess "${run[@]}" --stage 1
resume=()
compgen -G "ckpts/demo/$expt/checkpoint/step-*.pt" > /dev/null && resume=(--resume)
timed stage2_vits "${run[@]}" --stage 2 --name $expt "${resume[@]}" --set train.max_steps=$steps "$@"
convert_model vits ckpts/demo/$expt
score_models vits
python3 bins/bench/demo_table.py "$out" --models vits | tee "$out/table.md"
echo "Done. Converted songs: $out/vits/; metrics: $out/vits/metrics.tsv; table: $out/table.md; timings: $out/timings.tsv"
