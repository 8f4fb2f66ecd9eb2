#!/usr/bin/env bash
# Proxy vs gold reward across the checkpoints that scripts/evaluate.sh evaluated: per-step table, Spearman,
# Kendall, bootstrap interval, offline win rate; writes monotonicity.json and monotonicity.png into OUTPUT_DIR.
#
#   scripts/monotonicity.sh [extra eval_monotonicity.py flags, e.g. --relevance_scaling=false]
#
# OUTPUT_DIR (default ".") and EXP_NAME (default alpaca_test; PREFIX is the older name) are scripts/train.sh's.
# STEPS: the checkpoints compared, the paper's "500 1000 ... 5000" by default (scripts/evaluate.sh's); step numbers,
# or `all` for every step folder that holds an adapter or evaluation.py's outputs. A listed step without its folder
# is one error line naming it (exit 2).
# The proxy is the one the run trained with (its training_config.json). EVAL_PATH: default the paper's
# data/alpaca_eval.json, the set scripts/evaluate.sh answered.
# GOLD_MODEL / GOLD_TYPE pick the judge (default Starling-RM-34B, which needs a ~70 GB GPU in bf16); any one-label
# sequence classifier works with GOLD_TYPE=classifier (e.g. a Skywork-Reward model).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GOLD_ARGS=(--gold_model "${GOLD_MODEL:-Nexusflow/Starling-RM-34B}" --gold_type "${GOLD_TYPE:-starling}"
           --gold_batch_size "${GOLD_BATCH_SIZE:-8}")
if [ -n "${GOLD_TOKENIZER:-}" ]; then GOLD_ARGS+=(--gold_tokenizer "$GOLD_TOKENIZER"); fi
if [ -n "${EVAL_PATH:-}" ]; then GOLD_ARGS+=(--eval_path "$EVAL_PATH"); fi
STEPS="${STEPS:-500 1000 1500 2000 2500 3000 3500 4000 4500 5000}"
if [ "$STEPS" = all ]; then
  STEP_ARGS=(--all_steps)
else
  read -r -a STEP_ARGS <<< "${STEPS//,/ }"
  for s in "${STEP_ARGS[@]}"; do
    [[ "$s" =~ ^[0-9]+$ ]] || { echo "error: STEPS='$STEPS': expected step numbers or all" >&2; exit 2; }
  done
  STEP_ARGS=(--steps "${STEP_ARGS[@]}")
fi
python "$ROOT/eval_monotonicity.py" --output_dir "${OUTPUT_DIR:-.}" --model_prefix "${PREFIX:-${EXP_NAME:-alpaca_test}}" \
  "${STEP_ARGS[@]}" "${GOLD_ARGS[@]}" "$@"
