#!/usr/bin/env bash
# The paper's evaluation loop: answer the AlpacaEval instructions with the PPO checkpoints
# {OUTPUT_DIR}/{PREFIX}_step_N of STEPS (in step order), writing alpaca-eval-{PREFIX}_step_N.json into each folder.
# Finished checkpoints are skipped and interrupted ones resume, so the script can simply be rerun.
#
#   scripts/evaluate.sh [extra evaluation.py flags]          # after scripts/train.sh, from the repository root
#   BASE=path/to/sft10k OUTPUT_DIR=. EXP_NAME=alpaca_test scripts/evaluate.sh --eval_path data/eval.json
#   STEPS=all scripts/evaluate.sh                            # every complete checkpoint
#
# STEPS: the paper's protocol by default, "500 1000 ... 5000" (its README evaluates those of its 10,000 steps);
# step numbers, `all` (every complete checkpoint) or `last`. A listed step without a complete checkpoint is one
# error line naming it (exit 2), before any model loads.
# OUTPUT_DIR (default ".") and EXP_NAME (default alpaca_test; PREFIX is the older name) are scripts/train.sh's, so it
# finds what train.sh wrote. BASE defaults to the base model recorded in the first checkpoint's adapter_config.json.
# The eval set is evaluation.py's default, the paper's data/alpaca_eval.json (EVAL_PATH or --eval_path for another).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${PREFIX:-${EXP_NAME:-alpaca_test}}"
OUTPUT_DIR="${OUTPUT_DIR:-.}"
BATCH_SIZE="${BATCH_SIZE:-16}"
STEPS="${STEPS:-500 1000 1500 2000 2500 3000 3500 4000 4500 5000}"

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# The complete checkpoint folders of STEPS, ordered by step (rre/checkpoints.py: the one list every script uses; a
# save that was killed half-way is never among them). A step missing: its one error line names it; exit 2.
LISTED="$(python -m rre.checkpoints "$OUTPUT_DIR/$PREFIX" --steps "$STEPS" --name STEPS)" || exit 2
mapfile -t CKPTS <<< "$LISTED"
if [ -z "${BASE:-}" ]; then  # read through rre/files.py: a broken adapter_config.json is one error line
  BASE="$(python -c 'import sys
from rre.errors import exit_on_data_error
from rre.files import adapter_base_model
with exit_on_data_error():
    print(adapter_base_model(sys.argv[1]))' "${CKPTS[0]}")" || exit 2
  echo "BASE not set; using the adapters' base model: $BASE"
fi
EVAL_ARGS=()
if [ -n "${EVAL_PATH:-}" ]; then EVAL_ARGS=(--eval_path "$EVAL_PATH"); fi
# One process answers every checkpoint in turn, each as a call of its own would (the paper's loop started one
# process per checkpoint; the answers are the same, the imports and start are paid once).
python "$ROOT/evaluation.py" --base_model_name="$BASE" --peft_model_name "${CKPTS[@]}" --batch_size="$BATCH_SIZE" \
  --evaluations alpaca "${EVAL_ARGS[@]}" "$@"
