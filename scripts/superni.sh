#!/usr/bin/env bash
# The alignment tax: Super-NaturalInstructions ROUGE-L of the checkpoints of SUPERNI_STEPS (default 5000, the step
# the paper's README scores), written to superni_eval.json in each checkpoint folder. Compare with the same run on
# the SFT model (CKPT=none). SUPERNI_STEPS: step numbers, `all` or `last` (the highest complete checkpoint); a listed
# step without a complete checkpoint is one error line naming it (exit 2). CKPT=folder scores that folder instead.
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
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${CKPT:-}" ]; then
  CKPTS=("$CKPT")
else  # the complete checkpoints of SUPERNI_STEPS (rre/checkpoints.py); a missing one: one error line, exit 2
  LISTED="$(python -m rre.checkpoints "$OUTPUT_DIR/$PREFIX" --steps "${SUPERNI_STEPS:-5000}" --name SUPERNI_STEPS)" \
    || exit 2
  mapfile -t CKPTS <<< "$LISTED"
fi
PEFT_ARGS=()
if [ "${CKPTS[0]}" != "none" ]; then
  PEFT_ARGS=(--peft_model_name "${CKPTS[@]}")
  if [ -z "${BASE:-}" ]; then
    BASE="$(python -c 'import sys
from rre.errors import exit_on_data_error
from rre.files import adapter_base_model
with exit_on_data_error():
    print(adapter_base_model(sys.argv[1]))' "${CKPTS[0]}")" || exit 2
  fi
fi
: "${BASE:?set BASE to the base model}"
if [ ! -f "$SUPERNI_DIR/splits/default/test_tasks.txt" ]; then
  echo "cloning https://github.com/allenai/natural-instructions into $SUPERNI_DIR"
  git clone --depth 1 https://github.com/allenai/natural-instructions "$SUPERNI_DIR"
fi
python "$ROOT/evaluation.py" --base_model_name="$BASE" "${PEFT_ARGS[@]}" --batch_size="${BATCH_SIZE:-16}" \
  --evaluations superni --superni_dir "$SUPERNI_DIR" "$@"
