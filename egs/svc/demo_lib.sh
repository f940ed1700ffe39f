# Shared by the recipes' run_demo.sh (sourced, from the project root): wall times, the held-out
# pairs, and the conversion + evaluation of one model. The caller sets
#   out        the demo's output folder (timings.tsv, pairs/, one folder per model)
#   cfg        the demo config (stage 3 and `cantor eval` read its front end and vocoder)
#   processed  stage 1's folder of the demo dataset (test.json, train.json)
#   run        the recipe's run.sh command line, an array, e.g. (bash egs/svc/X/run.sh --config "$cfg")

timed() {  # timed NAME COMMAND...: run, and record its wall time in $out/timings.tsv
    local name=$1 start=$SECONDS
    shift
    echo "=== $name"
    "$@"
    printf '%s\t%d\n' "$name" $((SECONDS - start)) | tee -a "$out/timings.tsv"
}

start_timings() {  # a fresh $out/timings.tsv
    mkdir -p "$out"
    printf 'stage\tseconds\n' > "$out/timings.tsv"
}

whisper_weights() {  # tiny.en (the demos' content features) and base (CER), converted once
    [ -f pretrained/whisper/tiny.en.pt ] || timed convert_whisper cantor convert-whisper-ct2 pretrained/whisper/tiny.en.pt
    [ -f pretrained/whisper/base.pt ] || timed convert_whisper_base cantor convert-whisper-ct2 --model base pretrained/whisper/base.pt
}

# convert_model MODEL EXPERIMENT [K=V]: stage 3 of every pairs file (autoshift) into $out/MODEL
# (log: convert.log)
convert_model() {
    local model=$1 expt=$2 set=${3:-}
    local overrides=()
    [ -z "$set" ] || overrides=(--set "$set")
    [ -d "$out/pairs" ] || python3 bins/bench/demo_pairs.py "$processed/test.json" "$out/pairs"
    _convert() {
        rm -f "$out/$model/convert.log"
        mkdir -p "$out/$model"
        for pairs in "$out"/pairs/*.json; do
            "${run[@]}" --stage 3 --infer_expt_dir "$expt" --infer_source_file "$pairs" \
                --infer_target_speaker "$(basename "$pairs" .json)" --infer_key_shift autoshift \
                --infer_output_dir "$out/$model" "${overrides[@]}" 2>&1 | tee -a "$out/$model/convert.log"
        done
    }
    timed "stage3_convert_$model" _convert
}

# score_models MODEL...: one `cantor eval` of the models' folders (self-reconstruction, similarity,
# the key-shift control, FPC, CER in each source's language relative to copy synthesis) into
# $out/MODEL/metrics.tsv; what the models share (sources, copy syntheses, controls, references) is
# computed once
score_models() {
    local dirs=() model
    for model in "$@"; do dirs+=("$out/$model"); done
    timed eval cantor eval "${dirs[@]}" --source "$processed/test.json" \
        --target_refs "$processed/train.json" --config "$cfg" --key_shift auto \
        --language auto --whisper_path pretrained/whisper/base.pt --copy_synthesis
}
