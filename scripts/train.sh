#!/usr/bin/env bash
# The paper's PPO training command (its README), runnable as is. Every setting can be overridden with an
# environment variable; extra arguments are passed on to run_ppo.py (later flags win), e.g.
#
#   scripts/train.sh                                               # the paper's settings
#   MODEL_NAME=path/to/sft10k NUM_PROCESSES=8 scripts/train.sh     # the paper's AlpacaFarm SFT model on 8 GPUs
#   OVERALL_STEPS=30 OUTPUT_MAX_LENGTH=64 scripts/train.sh --prompt_format=alpaca
#
# MODEL_NAME: empty = the offline SmolLM2-135M-Instruct. ACCELERATE_CONFIG: default configs/zero2-bf16.yaml
# (DeepSpeed ZeRO-2, bf16) when a GPU is visible, else configs/zero2-cpu.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"

EXP_NAME="${EXP_NAME:-alpaca_test}"
OUTPUT_DIR="${OUTPUT_DIR:-./runs/${EXP_NAME}}"
MODEL_NAME="${MODEL_NAME:-}"
CACHE_DIR="${CACHE_DIR:-}"
DATASET_PATH="${DATASET_PATH:-data/train.json}"
DEV_PATH="${DEV_PATH:-data/dev.json}"
OVERALL_STEPS="${OVERALL_STEPS:-10000}"
SAVE_FREQ="${SAVE_FREQ:-500}"
SEED="${SEED:-42}"
OUTPUT_MAX_LENGTH="${OUTPUT_MAX_LENGTH:-512}"
BATCH_SIZE="${BATCH_SIZE:-16}"
MINI_BATCH_SIZE="${MINI_BATCH_SIZE:-2}"
GRADIENT_ACCUMULATION_STEPS="${GRADIENT_ACCUMULATION_STEPS:-4}"
LEARNING_RATE="${LEARNING_RATE:-1e-5}"
NUM_PROCESSES="${NUM_PROCESSES:-1}"
if [[ -z "${ACCELERATE_CONFIG:-}" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    ACCELERATE_CONFIG=configs/zero2-bf16.yaml
  else
    ACCELERATE_CONFIG=configs/zero2-cpu.yaml
  fi
fi

optional=()
[[ -n "${MODEL_NAME}" ]] && optional+=("--model_name=${MODEL_NAME}")
[[ -n "${CACHE_DIR}" ]] && optional+=("--cache_dir=${CACHE_DIR}")

set -x
accelerate launch --num_machines 1 --num_processes "${NUM_PROCESSES}" --config_file "${ACCELERATE_CONFIG}" run_ppo.py \
  --exp_name="${EXP_NAME}" "${optional[@]}" --overall_steps="${OVERALL_STEPS}" --seed="${SEED}" \
  --save_freq="${SAVE_FREQ}" --output_dir="${OUTPUT_DIR}" --dataset_path="${DATASET_PATH}" \
  --dev_prompt_path="${DEV_PATH}" --logging_dir="${OUTPUT_DIR}/logs" --output_max_length="${OUTPUT_MAX_LENGTH}" \
  --batch_size="${BATCH_SIZE}" --mini_batch_size="${MINI_BATCH_SIZE}" \
  --gradient_accumulation_steps="${GRADIENT_ACCUMULATION_STEPS}" --learning_rate="${LEARNING_RATE}" \
  --lora_r=8 --lora_alpha=16 --lora_dropout=0.05 --reward_model_batch_size 8 \
  --length_incentive=true --repetition_penalty=true --relevance_scaling=true --reward_branching=true \
  "$@"
