#!/usr/bin/env bash
# VitsSVC recipe (so-vits-svc 4.1's architecture). The same stages and flags as DiffComoSVC's
# run.sh, which runs them for either model (the config's model_type); the default config is
# this folder's exp_config.json:
#   sh egs/svc/VitsSVC/run.sh --stage 1 [--config CFG]
#   sh egs/svc/VitsSVC/run.sh --stage 2 --name EXP [--gpu 0] [--resume] ...
#   sh egs/svc/VitsSVC/run.sh --stage 3 --infer_expt_dir DIR --infer_output_dir DIR \
#        (--infer_source_audio_dir DIR | --infer_source_file test.json) \
#        --infer_target_speaker SINGER [--infer_key_shift N|autoshift]
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
here=$(cd "$(dirname "$0")" && pwd)
CANTOR_RECIPE_DIR="$here" exec bash "$here/../DiffComoSVC/run.sh" "$@"
