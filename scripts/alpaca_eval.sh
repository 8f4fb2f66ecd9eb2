#!/usr/bin/env bash
# The paper's win rate: alpaca_eval with the GPT-4 annotator (AlpacaEval 1, `alpaca_eval_gpt4`) on each
# checkpoint's outputs, against the eval set's own reference answers written locally (alpaca_eval's default
# reference set is downloaded from the hub, which fails offline and with datasets>=4). Needs OPENAI_API_KEY;
# without one, use the offline gold-reward-model win rate that scripts/monotonicity.sh prints.
#
#   OPENAI_API_KEY=... PREFIX=alpaca_test scripts/alpaca_eval.sh [outputs.json ...]
#
# With no arguments it evaluates every {OUTPUT_DIR}/{PREFIX}_step_N/alpaca-eval-*.json. EVAL_PATH picks the eval
# set (default data/eval.json); DRY_RUN=1 writes the reference file and prints the commands without running them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${OPENAI_API_KEY:-}" ]; then
  echo "error: OPENAI_API_KEY is not set; the alpaca_eval_gpt4 annotator calls the OpenAI API." \
       "Without a key, use the offline gold-RM win rate: scripts/monotonicity.sh" >&2
  exit 2
fi
PREFIX="${PREFIX:-alpaca_test}"
OUTPUT_DIR="${OUTPUT_DIR:-.}"
EVAL_PATH="${EVAL_PATH:-$ROOT/data/eval.json}"
REFERENCE="${REFERENCE_OUTPUTS:-$OUTPUT_DIR/reference-outputs-$(basename "${EVAL_PATH%.*}").json}"
if [ "$#" -gt 0 ]; then
  OUTPUTS=("$@")
else
  mapfile -t OUTPUTS < <(ls "$OUTPUT_DIR/${PREFIX}"_step_*/alpaca-eval-*.json 2>/dev/null | grep -v '\.partial\.' || true)
fi
if [ "${#OUTPUTS[@]}" -eq 0 ]; then
  echo "error: no outputs files $OUTPUT_DIR/${PREFIX}_step_N/alpaca-eval-*.json; run scripts/evaluate.sh first" >&2
  exit 2
fi
PYTHONPATH="$ROOT" python -c 'import sys
from rre.data import exit_on_data_error
from evaluation import write_reference_outputs
with exit_on_data_error():
    print("reference outputs:", write_reference_outputs(sys.argv[1], sys.argv[2]))' "$EVAL_PATH" "$REFERENCE"
# AlpacaEval 1 (the paper's setting): plain win rate, not AlpacaEval 2's length-controlled one.
export IS_ALPACA_EVAL_2=False
for outputs in "${OUTPUTS[@]}"; do
  cmd=(alpaca_eval --model_outputs "$outputs" --reference_outputs "$REFERENCE"
       --annotators_config alpaca_eval_gpt4 --output_path "$(dirname "$outputs")/alpaca_eval_gpt4")
  if [ -n "${DRY_RUN:-}" ]; then echo "${cmd[*]}"; else "${cmd[@]}"; fi
done
