#!/usr/bin/env bash
# The paper's whole run, one stage after another, each reading what the one before wrote:
#   1. train       scripts/train.sh          accelerate launch run_ppo.py with the paper's flags: 10,000 steps
#                                            -> {OUTPUT_DIR}/{EXP_NAME}_step_N every SAVE_FREQ (500) steps
#   2. evaluate    scripts/evaluate.sh       the checkpoints of STEPS answer the eval set
#                                            -> {checkpoint}/alpaca-eval-{EXP_NAME}_step_N.json
#   3. monotonicity scripts/monotonicity.sh  proxy (as trained) vs gold (Starling-RM-34B) over the same STEPS
#                                            -> {OUTPUT_DIR}/monotonicity.json, monotonicity.png
#   4. alpaca_eval scripts/alpaca_eval.sh    the GPT-4 annotator on the outputs of ALPACA_EVAL_STEPS when
#                                            OPENAI_API_KEY is set, else the commands are printed, ready to paste
#   5. SuperNI     scripts/superni.sh        ROUGE-L of the checkpoints of SUPERNI_STEPS -> {checkpoint}/superni_eval.json
#
# The protocol is the paper's README: STEPS="500 1000 ... 5000" (evaluation and monotonicity over the first half of
# the run), ALPACA_EVAL_STEPS=5000 and SUPERNI_STEPS=5000. Each takes step numbers, `all` or `last`, so another
# protocol is one setting away (e.g. STEPS=all SUPERNI_STEPS=last: every checkpoint, SuperNI on the final one); a
# listed step that the run did not save stops its stage with one error line naming it (exit 2).
#
#   bash scripts/get_paper_data.sh                                 # once: the paper's data into data/
#   MODEL_NAME=path/to/sft10k bash scripts/reproduce_paper.sh       # the paper's run (GPUs; docs/gpu.md)
#   MODEL_NAME=... GOLD_MODEL=... TINY=1 bash scripts/reproduce_paper.sh   # the same chain, tiny, on a CPU
#
# Shared settings (environment): EXP_NAME (alpaca_test), OUTPUT_DIR (.), MODEL_NAME, STEPS, ALPACA_EVAL_STEPS,
# SUPERNI_STEPS, and every variable of the stage scripts (NUM_PROCESSES, GOLD_MODEL, GOLD_TYPE, EVAL_PATH,
# SUPERNI_DIR, ...). STAGES picks stages (default "train evaluate monotonicity alpaca_eval superni"). Extra
# arguments go to run_ppo.py.
#
# TINY=1 runs the same protocol scaled down in minutes on a CPU, for the tests: MODEL_NAME (a small causal LM) and
# GOLD_MODEL (a one-label classifier, GOLD_TYPE=classifier) must be given; it trains 6 PPO steps saving every one on
# data/train.json with the offline encoder (--relevance_model minilm) under configs/zero2-cpu.yaml, evaluates steps
# 1 2 3 on data/eval.json with 8 new tokens, and runs alpaca_eval and SuperNI (data/superni-fixture) on step 3.
# Each TINY setting is only a default: the environment wins.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export EXP_NAME="${EXP_NAME:-alpaca_test}"
OUTPUT_DIR="${OUTPUT_DIR:-.}"
mkdir -p "$OUTPUT_DIR"
export OUTPUT_DIR="$(cd "$OUTPUT_DIR" && pwd)"  # every stage reads the same folder
STAGES="${STAGES:-train evaluate monotonicity alpaca_eval superni}"
EVAL_ARGS=() MONO_ARGS=() SUPERNI_ARGS=() TRAIN_ARGS=("$@")
if [ -n "${TINY:-}" ]; then
  : "${MODEL_NAME:?TINY=1 needs MODEL_NAME (a small causal LM folder)}" "${GOLD_MODEL:?TINY=1 needs GOLD_MODEL}"
  export OVERALL_STEPS="${OVERALL_STEPS:-6}" SAVE_FREQ="${SAVE_FREQ:-1}" BATCH_SIZE="${BATCH_SIZE:-4}"
  export STEPS="${STEPS:-1 2 3}" ALPACA_EVAL_STEPS="${ALPACA_EVAL_STEPS:-3}" SUPERNI_STEPS="${SUPERNI_STEPS:-3}"
  export MINI_BATCH_SIZE="${MINI_BATCH_SIZE:-2}" GRADIENT_ACCUMULATION_STEPS="${GRADIENT_ACCUMULATION_STEPS:-1}"
  export OUTPUT_MAX_LENGTH="${OUTPUT_MAX_LENGTH:-8}" DATASET_PATH="${DATASET_PATH:-data/train.json}"
  export DEV_PATH="${DEV_PATH:-data/dev.json}" ACCELERATE_CONFIG="${ACCELERATE_CONFIG:-configs/zero2-cpu.yaml}"
  export GOLD_TYPE="${GOLD_TYPE:-classifier}" EVAL_PATH="${EVAL_PATH:-data/eval.json}"
  export SUPERNI_DIR="${SUPERNI_DIR:-data/superni-fixture}"
  TRAIN_ARGS=(--relevance_model minilm --max_prompt_length=256 --dev_max_examples=2 --mixed_precision=no
              --log_with=none "${TRAIN_ARGS[@]}")
  EVAL_ARGS=(--max_new_tokens=8 --batch_size=16)
  MONO_ARGS=(--gold_device cpu --gold_dtype float32 --bootstrap_samples 50)
  SUPERNI_ARGS=(--superni_max_new_tokens=8 --superni_max_instances=2)
fi
export MODEL_NAME="${MODEL_NAME:-}"
export STEPS="${STEPS:-500 1000 1500 2000 2500 3000 3500 4000 4500 5000}"
export ALPACA_EVAL_STEPS="${ALPACA_EVAL_STEPS:-5000}" SUPERNI_STEPS="${SUPERNI_STEPS:-5000}"

stage() { printf '\n=== [%s] %s (EXP_NAME=%s OUTPUT_DIR=%s)\n' "$(date +%H:%M:%S)" "$1" "$EXP_NAME" "$OUTPUT_DIR"; }
for s in $STAGES; do
  case "$s" in
    train)        stage "1/5 train"; bash scripts/train.sh "${TRAIN_ARGS[@]}" ;;
    evaluate)     stage "2/5 evaluate steps $STEPS"; bash scripts/evaluate.sh "${EVAL_ARGS[@]}" ;;
    monotonicity) stage "3/5 monotonicity over steps $STEPS: proxy vs gold"
                  bash scripts/monotonicity.sh "${MONO_ARGS[@]}" ;;
    alpaca_eval)  stage "4/5 alpaca_eval of steps $ALPACA_EVAL_STEPS"; bash scripts/alpaca_eval.sh ;;
    superni)      stage "5/5 SuperNI of steps $SUPERNI_STEPS"; bash scripts/superni.sh "${SUPERNI_ARGS[@]}" ;;
    *) echo "error: STAGES: unknown stage '$s' (train evaluate monotonicity alpaca_eval superni)" >&2; exit 2 ;;
  esac
done
