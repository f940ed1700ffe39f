#!/usr/bin/env bash
# The measured journey of the README ("Your own voice, from long recordings"), on the demo data:
#   1. a base: `cantor train` on five demo singers (every singer but ZH-Alto-1, their takes as clips)
#   2. a new voice: ZH-Alto-1's first --songs songs (of zh01-zh04), each song's takes joined into
#      one long recording, cut by `cantor prepare`
#   3. for each --ft-steps N: `cantor train --base` (N teacher steps, N/2 student steps), then its
#      student converts the base's held-out takes into ZH-Alto-1 (autoshift) and `cantor eval`
#      scores them against the new voice's clips and the key-shift control
#   4. the table (out/journey/table.md; one row per base steps x fine-tune steps) and the wall times
#      of every step (out/journey/timings.tsv)
# Usage: bash bins/bench/journey.sh [--base-steps N] [--ft-steps N]... [--songs 1-4] [--keep-old-singers]
# Defaults: --base-steps 400 --ft-steps 200 --songs 4. Re-running skips what is already trained and
# scored.
set -euo pipefail
base_steps=400 ft_steps=() keep=() tag="" songs=4
while [ $# -gt 0 ]; do
    case $1 in
        --base-steps) base_steps=$2; shift 2 ;;
        --ft-steps) ft_steps+=("$2"); shift 2 ;;
        --songs) songs=$2; shift 2 ;;
        --keep-old-singers) keep=(--keep-old-singers); tag=_keep; shift ;;
        *) echo "journey.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ ${#ft_steps[@]} -gt 0 ] || ft_steps=(200)
case $songs in 1|2|3|4) ;; *) echo "journey.sh: --songs takes 1 to 4" >&2; exit 2 ;; esac
voice=new_voice
[ "$songs" = 4 ] || { voice=new_voice_$songs; tag=${tag}_songs$songs; }
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
demo=${CANTOR_DEMO_DATA:-../shared/data/gtsinger_demo}
work=data/journey out=out/journey
mkdir -p "$work" "$out"
source egs/svc/demo_lib.sh   # timed
[ -f "$out/timings.tsv" ] || start_timings

[ -f pretrained/whisper/tiny.en.pt ] || timed convert_whisper cantor convert-whisper-ct2 pretrained/whisper/tiny.en.pt
# The base's clips: the five singers' takes, linked file by file (singer/song/take.flac).
if [ ! -d "$work/base" ]; then
    for take in "$demo"/*/*/*.flac; do
        rel=${take#"$demo"/}
        case $rel in ZH-Alto-1/*) continue ;; esac
        mkdir -p "$work/base/$(dirname "$rel")"
        ln -s "$(cd "$(dirname "$take")" && pwd)/$(basename "$take")" "$work/base/$rel"
    done
fi
# The new voice: one long recording per song, then clips.
if [ ! -d "$work/$voice" ]; then
    python3 - "$demo/ZH-Alto-1" "$work/raw_$songs/ZH-Alto-1" "$songs" <<'EOF'
import sys
from pathlib import Path
import numpy as np
from utils.audio import load_audio, save_wav
singer, raw, songs = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
for song in ("zh01", "zh02", "zh03", "zh04")[:songs]:
    takes = [load_audio(t, 44100) for t in sorted((singer / song).glob("*.flac"))]
    save_wav(raw / f"{song}.wav", np.concatenate(takes), 44100)
EOF
    timed "prepare_$voice" cantor prepare "$work/raw_$songs" -o "$work/$voice"
fi

base=journey_base_$base_steps
timed "train_$base" cantor train "$work/base" --name "$base" --preset demo --steps "$base_steps"
heldout=ckpts/$base/processed/base/test.json
models=()
for n in "${ft_steps[@]}"; do
    model=ft_${base_steps}_$n$tag
    models+=("$model")
    timed "train_$model" cantor train "$work/$voice" --name "journey_$model" \
        --base "ckpts/$base/teacher" --steps "$n" "${keep[@]}"
    [ -f "$out/$model/metrics.tsv" ] && continue
    rm -rf "${out:?}/$model"
    timed "convert_$model" bash egs/svc/DiffComoSVC/run.sh --stage 3 \
        --infer_expt_dir "ckpts/journey_$model/student" --infer_source_file "$heldout" \
        --infer_target_speaker "${voice}_ZH-Alto-1" --infer_key_shift autoshift \
        --infer_output_dir "$out/$model" 2>&1 | tee "$out/$model.convert.log"
    mv "$out/$model.convert.log" "$out/$model/convert.log"
    timed "eval_$model" cantor eval "$out/$model" --source "$heldout" \
        --target_refs "${voice}_ZH-Alto-1=$work/$voice/ZH-Alto-1" --key_shift auto \
        --config "ckpts/journey_$model/exp_config.json" --output_tsv "$out/$model/metrics.tsv"
done
python3 bins/bench/demo_table.py "$out" --models "${models[@]}" | tee "$out/table_$base$tag.md"
