#!/usr/bin/env bash
# DiffComoSVC recipe. Works from any directory:
#   sh egs/svc/DiffComoSVC/run.sh --stage 1 [--config CFG] [--shard K/N | --merge_shards N]
#   sh egs/svc/DiffComoSVC/run.sh --stage 2 --name EXP [--gpu 0,1] [--resume] ...
#        [--num_machines M --machine_rank R --main_process_ip IP [--main_process_port P]]
#        [--accelerate_config FILE]
#   sh egs/svc/DiffComoSVC/run.sh --stage 3 --infer_expt_dir DIR --infer_output_dir DIR \
#        (--infer_source_audio_dir DIR | --infer_source_file test.json) \
#        --infer_target_speaker SINGER|"A:0.7,B:0.3" [--infer_key_shift N|autoshift]
#        [--infer_index_rate X] [--infer_protect X]
# Teacher vs student: stage 2 distils when the config sets model.comosvc.distill (or --distill).
# Exit status: the stage's own (0 done, 1 some inputs failed, 2 bad options/config/data/checkpoint).
# The stages serve every model (the config's model_type): egs/svc/VitsSVC/run.sh runs this script
# with CANTOR_RECIPE_DIR set to its folder (the default config's place).
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
set -euo pipefail

exp_dir=${CANTOR_RECIPE_DIR:-$(cd "$(dirname "$0")" && pwd)}
root=$(cd "$(dirname "$0")/../../.." && pwd)

usage() {
    cat >&2 <<USAGE
usage: run.sh --stage 1|2|3 [options]
  --config FILE                 experiment config (default: $exp_dir/exp_config.json)
  --set KEY=VALUE               config override, repeatable (e.g. --set train.batch_size=8)
  --num_workers N               stage 1: worker processes (default: every core)
  --overwrite                   stage 1: recompute existing features
  --shard K/N                   stage 1: extract only shard K of N (one per machine/process)
  --merge_shards N              stage 1: after all N shards: write metadata and statistics
  --name NAME                   stage 2: experiment name (log_dir/NAME)
  --gpu IDS                     stage 2/3: CUDA device ids, e.g. 0 or 0,1 (default: CPU or cuda:0)
  --num_machines M              stage 2: machines in the run, each with the same --gpu count
  --machine_rank R              stage 2: this machine's rank, 0 .. M-1 (0 runs the main process)
  --main_process_ip IP          stage 2: address of machine 0 (needed when M > 1)
  --main_process_port PORT      stage 2: its port (default: 29500)
  --accelerate_config FILE      stage 2: an \`accelerate config\` file instead of the options above
  --distill                     stage 2: consistency distillation (sets model.comosvc.distill)
  --resume                      stage 2: continue from the newest checkpoint of log_dir/NAME
  --resume_from_ckpt_path PATH  stage 2: resume from this checkpoint (file or folder)
  --resume_type resume|finetune stage 2: full state, or weights only (default: resume)
  --infer_expt_dir DIR          stage 3: trained experiment folder
  --infer_output_dir DIR        stage 3: where converted wavs go
  --infer_source_file FILE      stage 3: a processed test.json to convert
  --infer_source_audio_dir DIR  stage 3: every wav/flac/mp3/ogg below DIR
  --infer_target_speaker NAME   stage 3: a key of singers.json, e.g. opencpop_female1
  --infer_key_shift N|autoshift stage 3: semitones, or match the target's median F0 (default: 0)
  --infer_index_rate X          stage 3: share of the feature-retrieval index, 0 .. 1 (default 0: off)
  --infer_protect X             stage 3: unvoiced frames keep 1 - X of the source features (0.5: off)
USAGE
    exit 2
}

stage="" config="$exp_dir/exp_config.json" config_given=0 name="" gpu="" resume=0 resume_path="" resume_type="resume"
num_workers="" overwrite=0 distill=0 shard="" merge_shards=""
num_machines=1 machine_rank=0 main_process_ip="" main_process_port=29500 accelerate_config=""
infer_expt_dir="" infer_output_dir="" infer_source_file="" infer_source_audio_dir=""
infer_target_speaker="" infer_key_shift="0" infer_index_rate="" infer_protect=""
sets=()

need() { [ $# -ge 2 ] && [ -n "$2" ] || { echo "run.sh: $1 needs a value" >&2; usage; }; }
while [ $# -gt 0 ]; do
    case "$1" in
        --stage) need "$@"; stage=$2; shift 2 ;;
        --config) need "$@"; config=$2; config_given=1; shift 2 ;;
        --set) need "$@"; sets+=(--set "$2"); shift 2 ;;
        --num_workers) need "$@"; num_workers=$2; shift 2 ;;
        --overwrite) overwrite=1; shift ;;
        --shard) need "$@"; shard=$2; shift 2 ;;
        --merge_shards) need "$@"; merge_shards=$2; shift 2 ;;
        --num_machines) need "$@"; num_machines=$2; shift 2 ;;
        --machine_rank) need "$@"; machine_rank=$2; shift 2 ;;
        --main_process_ip) need "$@"; main_process_ip=$2; shift 2 ;;
        --main_process_port) need "$@"; main_process_port=$2; shift 2 ;;
        --accelerate_config) need "$@"; accelerate_config=$2; shift 2 ;;
        --name) need "$@"; name=$2; shift 2 ;;
        --gpu) need "$@"; gpu=$2; shift 2 ;;
        --distill) distill=1; shift ;;
        --resume) resume=1; shift ;;
        --resume_from_ckpt_path) need "$@"; resume_path=$2; shift 2 ;;
        --resume_type) need "$@"; resume_type=$2; shift 2 ;;
        --infer_expt_dir) need "$@"; infer_expt_dir=$2; shift 2 ;;
        --infer_output_dir) need "$@"; infer_output_dir=$2; shift 2 ;;
        --infer_source_file) need "$@"; infer_source_file=$2; shift 2 ;;
        --infer_source_audio_dir) need "$@"; infer_source_audio_dir=$2; shift 2 ;;
        --infer_target_speaker) need "$@"; infer_target_speaker=$2; shift 2 ;;
        --infer_key_shift) need "$@"; infer_key_shift=$2; shift 2 ;;
        --infer_index_rate) need "$@"; infer_index_rate=$2; shift 2 ;;
        --infer_protect) need "$@"; infer_protect=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "run.sh: unknown option: $1" >&2; usage ;;
    esac
done

abspath() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
config=$(abspath "$config")
[ -f "$config" ] || { echo "run.sh: config not found: $config" >&2; exit 2; }
for v in infer_expt_dir infer_output_dir infer_source_file infer_source_audio_dir resume_path accelerate_config; do
    [ -z "${!v}" ] || printf -v "$v" '%s' "$(abspath "${!v}")"
done
case "$resume_type" in resume|finetune) ;; *) echo "run.sh: --resume_type must be resume or finetune" >&2; usage ;; esac
[ -z "$gpu" ] || export CUDA_VISIBLE_DEVICES="$gpu"
cd "$root"

case "$stage" in
    1)
        args=(--config "$config" "${sets[@]}")
        [ -z "$num_workers" ] || args+=(--num_workers "$num_workers")
        [ $overwrite = 0 ] || args+=(--overwrite)
        [ -z "$shard" ] || args+=(--shard "$shard")
        [ -z "$merge_shards" ] || args+=(--merge_shards "$merge_shards")
        exec python bins/svc/preprocess.py "${args[@]}"
        ;;
    2)
        [ -n "$name" ] || { echo "run.sh: stage 2 needs --name" >&2; usage; }
        args=(--config "$config" --exp_name "$name" --resume_type "$resume_type" "${sets[@]}")
        [ $resume = 0 ] || args+=(--resume)
        [ -z "$resume_path" ] || args+=(--resume_from_ckpt_path "$resume_path")
        [ $distill = 0 ] || args+=(--set model.comosvc.distill=true)
        # accelerate launch gives each process one CPU thread unless told otherwise; share the cores.
        n=1
        [ -z "$gpu" ] || n=$(echo "$gpu" | tr ',' '\n' | grep -c .)
        threads=$(( $(nproc) / n )); [ "$threads" -ge 1 ] || threads=1
        case "$num_machines$machine_rank$main_process_port" in *[!0-9]*)
            echo "run.sh: --num_machines, --machine_rank and --main_process_port take integers" >&2; usage ;; esac
        if [ -n "$accelerate_config" ]; then
            [ -f "$accelerate_config" ] || { echo "run.sh: accelerate config not found: $accelerate_config" >&2; exit 2; }
            launch=(--config_file "$accelerate_config")
        else
            # Every machine runs n processes; accelerate's --num_processes counts them all.
            # (--mixed_precision only silences the launcher: the trainer applies train.mixed_precision.)
            launch=(--num_processes $(( n * num_machines )) --num_machines "$num_machines"
                    --dynamo_backend no --mixed_precision no --num_cpu_threads_per_process "$threads")
            [ $(( n * num_machines )) -le 1 ] || launch+=(--multi_gpu)
        fi
        if [ "$num_machines" -gt 1 ]; then
            [ -n "$main_process_ip" ] || { echo "run.sh: --num_machines $num_machines needs --main_process_ip (machine 0's address)" >&2; usage; }
            [ "$machine_rank" -lt "$num_machines" ] || { echo "run.sh: --machine_rank must be below --num_machines" >&2; usage; }
            launch+=(--machine_rank "$machine_rank" --main_process_ip "$main_process_ip"
                     --main_process_port "$main_process_port")
        fi
        # bins/launch.py is accelerate launch returning train.py's own exit status (2 for a config,
        # data or checkpoint error, printed as one line) without the launcher's traceback.
        exec python bins/launch.py "${launch[@]}" bins/svc/train.py "${args[@]}"
        ;;
    3)
        [ -n "$infer_expt_dir" ] && [ -n "$infer_output_dir" ] && [ -n "$infer_target_speaker" ] || {
            echo "run.sh: stage 3 needs --infer_expt_dir, --infer_output_dir and --infer_target_speaker" >&2; usage; }
        [ -n "$infer_source_file$infer_source_audio_dir" ] || {
            echo "run.sh: stage 3 needs --infer_source_file or --infer_source_audio_dir" >&2; usage; }
        # Conversion takes everything from the experiment; a --config given only steers it
        # (inference.*, vocoder.*, this machine's content-model paths).
        args=(--infer_expt_dir "$infer_expt_dir" --infer_output_dir "$infer_output_dir"
              --infer_target_speaker "$infer_target_speaker" --infer_key_shift "$infer_key_shift" "${sets[@]}")
        [ "$config_given" = 0 ] || args+=(--config "$config")
        [ -z "$infer_source_file" ] || args+=(--infer_source_file "$infer_source_file")
        [ -z "$infer_source_audio_dir" ] || args+=(--infer_source_audio_dir "$infer_source_audio_dir")
        [ -z "$infer_index_rate" ] || args+=(--infer_index_rate "$infer_index_rate")
        [ -z "$infer_protect" ] || args+=(--infer_protect "$infer_protect")
        exec python bins/svc/inference.py "${args[@]}"
        ;;
    "") echo "run.sh: --stage is required" >&2; usage ;;
    *) echo "run.sh: unknown stage: $stage" >&2; usage ;;
esac
