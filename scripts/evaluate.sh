#!/usr/bin/env bash
# The paper's evaluation loop: answer the AlpacaEval instructions with every PPO checkpoint
# {OUTPUT_DIR}/{PREFIX}_step_N (ordered by N), writing alpaca-eval-{PREFIX}_step_N.json into each folder.
# Finished checkpoints are skipped and interrupted ones resume, so the script can simply be rerun.
#
#   BASE=HuggingFaceTB/SmolLM2-135M-Instruct PREFIX=alpaca_test scripts/evaluate.sh [extra evaluation.py flags]
#
# BASE defaults to the base model recorded in the first checkpoint's adapter_config.json.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${PREFIX:-alpaca_test}"
OUTPUT_DIR="${OUTPUT_DIR:-.}"
BATCH_SIZE="${BATCH_SIZE:-16}"

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# Complete checkpoint folders, ordered by step (rre/checkpoints.py: the one list every script uses; a save that
# was killed half-way is never among them). None found: its one error line says what it looked for; exit 2.
LISTED="$(python -m rre.checkpoints "$OUTPUT_DIR/$PREFIX")" || exit 2
mapfile -t CKPTS <<< "$LISTED"
if [ -z "${BASE:-}" ]; then  # read through rre/records.py: a broken adapter_config.json is one error line
  BASE="$(python -c 'import sys
from rre.data import exit_on_data_error
from rre.records import adapter_base_model
with exit_on_data_error():
    print(adapter_base_model(sys.argv[1]))' "${CKPTS[0]}")" || exit 2
  echo "BASE not set; using the adapters' base model: $BASE"
fi
for ckpt in "${CKPTS[@]}"; do
  python "$ROOT/evaluation.py" --base_model_name="$BASE" --peft_model_name="$ckpt" --batch_size="$BATCH_SIZE" \
    --evaluations alpaca "$@"
done
