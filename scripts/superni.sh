#!/usr/bin/env bash
# The alignment tax: Super-NaturalInstructions ROUGE-L of one checkpoint (default: the last PPO step), written
# to superni_eval.json in the checkpoint folder. Compare with the same run on the SFT model (CKPT=none).
#
#   scripts/superni.sh [extra evaluation.py flags]           # after scripts/train.sh, from the repository root
#
# OUTPUT_DIR (default ".") and EXP_NAME (default alpaca_test; PREFIX is the older name) are scripts/train.sh's.
# SUPERNI_DIR defaults to data/natural-instructions, where the paper cloned allenai/natural-instructions; it is
# cloned there on first use (about 1 GB). SUPERNI_DIR=data/superni-fixture runs the 3-task test fixture instead.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${PREFIX:-${EXP_NAME:-alpaca_test}}"
OUTPUT_DIR="${OUTPUT_DIR:-.}"
SUPERNI_DIR="${SUPERNI_DIR:-$ROOT/data/natural-instructions}"
if [ ! -f "$SUPERNI_DIR/splits/default/test_tasks.txt" ]; then
  echo "cloning https://github.com/allenai/natural-instructions into $SUPERNI_DIR"
  git clone --depth 1 https://github.com/allenai/natural-instructions "$SUPERNI_DIR"
fi
if [ -z "${CKPT:-}" ]; then  # the checkpoint with the largest step number
  CKPT="$(for d in "$OUTPUT_DIR/${PREFIX}"_step_*/; do
    [ -f "$d/adapter_config.json" ] && printf '%s\t%s\n' "$(basename "$d" | sed 's/.*_step_//')" "${d%/}"
  done | sort -n | tail -n 1 | cut -f2-)"
  [ -n "$CKPT" ] || { echo "error: no checkpoint $OUTPUT_DIR/${PREFIX}_step_N; set CKPT" >&2; exit 2; }
fi
PEFT_ARGS=()
if [ "$CKPT" != "none" ]; then
  PEFT_ARGS=(--peft_model_name="$CKPT")
  if [ -z "${BASE:-}" ]; then
    BASE="$(PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" python -c 'import sys
from rre.data import exit_on_data_error
from rre.records import adapter_base_model
with exit_on_data_error():
    print(adapter_base_model(sys.argv[1]))' "$CKPT")" || exit 2
  fi
fi
: "${BASE:?set BASE to the base model}"
python "$ROOT/evaluation.py" --base_model_name="$BASE" "${PEFT_ARGS[@]}" --batch_size="${BATCH_SIZE:-16}" \
  --evaluations superni --superni_dir "$SUPERNI_DIR" "$@"
