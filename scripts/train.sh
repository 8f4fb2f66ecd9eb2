#!/usr/bin/env bash
# The paper's PPO training command (its README), runnable as is. Every setting can be overridden with an
# environment variable; extra arguments are passed on to run_ppo.py (later flags win), e.g.
#
#   MODEL_NAME=path/to/sft10k scripts/train.sh                     # the paper's run (data: scripts/get_paper_data.sh)
#   SEED=1 EXP_NAME=seed1 MODEL_NAME=path/to/sft10k scripts/train.sh  # one of several runs: launch_runs.py
#   DATASET_PATH=data/train.json DEV_PATH=data/dev.json OVERALL_STEPS=30 scripts/train.sh --relevance_model minilm
#
# Checkpoints land in {OUTPUT_DIR}/{EXP_NAME}_step_N (OUTPUT_DIR "." and EXP_NAME alpaca_test, as the paper's
# README), where scripts/evaluate.sh, monotonicity.sh, alpaca_eval.sh and superni.sh look with the same defaults.
# MODEL_NAME: empty = the offline SmolLM2-135M-Instruct. ACCELERATE_CONFIG: default configs/zero2-bf16.yaml
# (DeepSpeed ZeRO-2, bf16) when a GPU is visible, else configs/zero2-cpu.yaml. The relevance encoder is the
# paper's facebook/contriever unless you pass --relevance_model. HF_HUB_OFFLINE is yours to set: hub names download
# unless you set it.
set -euo pipefail
cd "$(dirname "$0")/.."

EXP_NAME="${EXP_NAME:-alpaca_test}"
OUTPUT_DIR="${OUTPUT_DIR:-.}"
MODEL_NAME="${MODEL_NAME:-}"
CACHE_DIR="${CACHE_DIR:-}"
DATASET_PATH="${DATASET_PATH:-data/alpacafarm_train.json}"
DEV_PATH="${DEV_PATH:-data/alpacafarm_val.json}"
OVERALL_STEPS="${OVERALL_STEPS:-10000}"
SAVE_FREQ="${SAVE_FREQ:-500}"
SEED="${SEED:-42}"
OUTPUT_MAX_LENGTH="${OUTPUT_MAX_LENGTH:-512}"
BATCH_SIZE="${BATCH_SIZE:-16}"
MINI_BATCH_SIZE="${MINI_BATCH_SIZE:-2}"
GRADIENT_ACCUMULATION_STEPS="${GRADIENT_ACCUMULATION_STEPS:-4}"
LEARNING_RATE="${LEARNING_RATE:-1e-5}"
NUM_PROCESSES="${NUM_PROCESSES:-1}"
NUM_MACHINES="${NUM_MACHINES:-1}"
if [[ -z "${ACCELERATE_CONFIG:-}" ]]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    ACCELERATE_CONFIG=configs/zero2-bf16.yaml
  else
    ACCELERATE_CONFIG=configs/zero2-cpu.yaml
  fi
fi
for f in "$DATASET_PATH" "$DEV_PATH"; do
  if [[ ! -e "$f" ]]; then
    echo "error: $f: no such file; get the paper's data with \`bash scripts/get_paper_data.sh\`" \
         "(all three files; --from DIR for a local copy), or set DATASET_PATH=data/train.json DEV_PATH=data/dev.json (offline examples)" >&2
    exit 2
  fi
done

launch=(--num_machines "${NUM_MACHINES}" --num_processes "${NUM_PROCESSES}" --config_file "${ACCELERATE_CONFIG}")
if [[ "${NUM_MACHINES}" -gt 1 ]]; then  # every node must dial the same fixed port
  launch+=(--machine_rank "${MACHINE_RANK:?set MACHINE_RANK (0 on the main node)}"
           --main_process_ip "${MAIN_PROCESS_IP:?set MAIN_PROCESS_IP (the main node)}"
           --main_process_port "${MAIN_PROCESS_PORT:-29500}")
elif [[ -n "${MAIN_PROCESS_PORT:-}" ]]; then  # launch_runs.py gives each run its own
  launch+=(--main_process_port "${MAIN_PROCESS_PORT}")
fi
optional=()
[[ -n "${MODEL_NAME}" ]] && optional+=("--model_name=${MODEL_NAME}")
[[ -n "${CACHE_DIR}" ]] && optional+=("--cache_dir=${CACHE_DIR}")

set -x
accelerate launch "${launch[@]}" run_ppo.py \
  --exp_name="${EXP_NAME}" "${optional[@]}" --overall_steps="${OVERALL_STEPS}" --seed="${SEED}" \
  --save_freq="${SAVE_FREQ}" --output_dir="${OUTPUT_DIR}/${EXP_NAME}" --dataset_path="${DATASET_PATH}" \
  --dev_prompt_path="${DEV_PATH}" --logging_dir="${OUTPUT_DIR}/${EXP_NAME}/logs" --output_max_length="${OUTPUT_MAX_LENGTH}" \
  --batch_size="${BATCH_SIZE}" --mini_batch_size="${MINI_BATCH_SIZE}" \
  --gradient_accumulation_steps="${GRADIENT_ACCUMULATION_STEPS}" --learning_rate="${LEARNING_RATE}" \
  --lora_r=8 --lora_alpha=16 --lora_dropout=0.05 --reward_model_batch_size 8 \
  --length_incentive=true --repetition_penalty=true --relevance_scaling=true --reward_branching=true \
  "$@"
