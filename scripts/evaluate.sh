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

# Complete checkpoint folders, ordered by step (rre/checkpoints.py: the one list every script uses; a save that
# was killed half-way is never among them).
mapfile -t CKPTS < <(PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" python -m rre.checkpoints "$OUTPUT_DIR/$PREFIX")
if [ "${#CKPTS[@]}" -eq 0 ]; then
  echo "error: no complete checkpoints $OUTPUT_DIR/${PREFIX}_step_N (folders with a LoRA adapter)" >&2
  exit 2
fi
if [ -z "${BASE:-}" ]; then
  BASE="$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["base_model_name_or_path"])' \
    "${CKPTS[0]}/adapter_config.json")"
  echo "BASE not set; using the adapters' base model: $BASE"
fi
for ckpt in "${CKPTS[@]}"; do
  python "$ROOT/evaluation.py" --base_model_name="$BASE" --peft_model_name="$ckpt" --batch_size="$BATCH_SIZE" \
    --evaluations alpaca "$@"
done
