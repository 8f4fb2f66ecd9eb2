#!/usr/bin/env bash
# The paper's win rate: alpaca_eval with the GPT-4 annotator (AlpacaEval 1, `alpaca_eval_gpt4`) on each
# checkpoint's outputs, against the eval set's own reference answers written locally (alpaca_eval's default
# reference set is downloaded from the hub, which fails offline and with datasets>=4).
#
#   OPENAI_API_KEY=... scripts/alpaca_eval.sh [outputs.json ...]   # runs alpaca_eval on each outputs file
#   scripts/alpaca_eval.sh                                         # no key: prints the commands, ready to paste
#
# With no arguments it takes {OUTPUT_DIR}/{EXP_NAME}_step_N/alpaca-eval-*.json of each step N of ALPACA_EVAL_STEPS
# (OUTPUT_DIR "." and EXP_NAME alpaca_test, scripts/train.sh's defaults; PREFIX is the older name of EXP_NAME).
# ALPACA_EVAL_STEPS: the paper's 5000 by default (its README annotates step 5000's outputs); step numbers, `all`
# (every step folder holding outputs) or `last`; a listed step without outputs is one error line (exit 2).
# EVAL_PATH picks the eval set
# (default the paper's data/alpaca_eval.json, the set scripts/evaluate.sh answered); DRY_RUN=1 prints the commands
# even with a key. The reference outputs file is written either way. Without a key, the offline gold-reward-model
# win rate is in scripts/monotonicity.sh's output.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${PREFIX:-${EXP_NAME:-alpaca_test}}"
OUTPUT_DIR="${OUTPUT_DIR:-.}"
EVAL_PATH="${EVAL_PATH:-data/alpaca_eval.json}"
REFERENCE="${REFERENCE_OUTPUTS:-$OUTPUT_DIR/reference-outputs-$(basename "${EVAL_PATH%.*}").json}"
if [ "$#" -gt 0 ]; then
  OUTPUTS=("$@")
else
  LISTED="$(PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" python -m rre.checkpoints "$OUTPUT_DIR/$PREFIX" --outputs \
    --steps "${ALPACA_EVAL_STEPS:-5000}" --name ALPACA_EVAL_STEPS)" || exit 2
  mapfile -t OUTPUTS <<< "$LISTED"
fi
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" python -c 'import sys
from rre.errors import exit_on_data_error
from rre.paper_data import eval_file
from evaluation import write_reference_outputs
with exit_on_data_error():
    eval_file("eval_path (EVAL_PATH)", sys.argv[1])
    print("reference outputs:", write_reference_outputs(sys.argv[1], sys.argv[2]))' "$EVAL_PATH" "$REFERENCE"
RUN=1
if [ -n "${DRY_RUN:-}" ]; then
  RUN=""
elif [ -z "${OPENAI_API_KEY:-}" ]; then
  RUN=""
  echo "note: OPENAI_API_KEY is not set, so alpaca_eval (GPT-4 annotator) is not run; the commands, ready to paste" \
       "after export OPENAI_API_KEY=...:" >&2
fi
# AlpacaEval 1 (the paper's setting): plain win rate, not AlpacaEval 2's length-controlled one.
export IS_ALPACA_EVAL_2=False
[ -n "$RUN" ] || echo "export IS_ALPACA_EVAL_2=False"
for outputs in "${OUTPUTS[@]}"; do
  cmd=(alpaca_eval --model_outputs "$outputs" --reference_outputs "$REFERENCE"
       --annotators_config alpaca_eval_gpt4 --output_path "$(dirname "$outputs")/alpaca_eval_gpt4")
  if [ -n "$RUN" ]; then "${cmd[@]}"; else printf '%q ' "${cmd[@]}" | sed 's/ $/\n/'; fi
done
