#!/usr/bin/env bash
# One prepared GPU run (about 6-8 minutes on one H100/H200): the paper's path as far as one GPU without model
# files or internet allows, at real shapes with random-weight models built from configs, ending in one summary
# block with the time and the peak GPU memory of every phase.
#   1. models: a ~1.1B Llama-shaped policy (TinyLlama's shape, SmolLM2's tokenizer), a random-weight
#      all-MiniLM-L6-v2 and a random-weight encoder of facebook/contriever's architecture (bench/gpu_models.py)
#   2. run_ppo.py under `accelerate launch` in bf16 with the paper's batch settings (batch 16, mini-batch 2,
#      gradient accumulation 4, 4 PPO epochs), 512-token rollouts, the full white-box reward with the Contriever-
#      shaped encoder (mean pooling, raw dot, rar_max_dot 3.5): 2 steps saving every step, then a resume to step 3.
#      With DeepSpeed importable the launch uses configs/zero2-bf16.yaml (the paper's); without it the same run
#      under a plain `accelerate launch --mixed_precision bf16`, and the summary says which
#   3. evaluation.py on two of those checkpoints, each loaded whole on --device 0 (the one-GPU path), answering
#      the 30 instructions of data/eval.json
#   4. bench/gold_throughput.py --device cuda (a small Starling-layout Llama RM, hidden 1024 x 8 layers)
#   5. bench/reward_throughput.py --device cuda (the white-box reward, Contriever-shaped encoder on the GPU)
#
# Needs: torch (CUDA), transformers, peft, accelerate, sentence-transformers; plus what bench/gpu_prepare.sh puts
# in .gpu_assets/ (tokenizer files) and .whl/ (nltk, rich wheels, installed offline if missing). Carry both.
#
#   bash bench/gpu_prepare.sh               # here, once: assets and wheels (git-ignored)
#   bash bench/gpu_check.sh                 # on the GPU machine
#   bash bench/gpu_check.sh --dry-run       # the same code paths at tiny sizes on CPU (tests/test_gpu_check.py;
#                                           # its launch is the plain one, DeepSpeed's bf16 path needs the GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) echo "error: unknown argument '$1' (expected --dry-run or nothing)" >&2; exit 2 ;;
esac
ASSETS=${ASSETS:-.gpu_assets}
WHEELS=${WHEELS:-.whl}
WORK=${WORK:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
mkdir -p "$WORK/logs"
T0=$(date +%s)
phase() { printf '\n=== [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
since() { echo $(( $(date +%s) - $1 )); }

phase "0/5 environment"
if ! python -c "import nltk, rich" 2>/dev/null; then
  if [ ! -d "$WHEELS" ]; then
    echo "error: nltk/rich missing and no $WHEELS folder; run bench/gpu_prepare.sh and carry $WHEELS" >&2; exit 2
  fi
  python -m pip install -q --no-index --find-links "$WHEELS" nltk rich
fi
if [ ! -f "$ASSETS/smollm2_tokenizer/tokenizer.json" ]; then
  if [ $DRY = 1 ]; then
    bash bench/gpu_prepare.sh --no-wheels  # the CPU machine has the offline models to copy from
  else
    echo "error: $ASSETS/smollm2_tokenizer missing; run bench/gpu_prepare.sh and carry $ASSETS" >&2; exit 2
  fi
fi
if [ $DRY = 1 ]; then
  DEVICE=cpu TINY=--tiny
  PPO_SIZES=(--batch_size=4 --mini_batch_size=2 --gradient_accumulation_steps=2 --output_max_length=8
             --max_prompt_length=256)
  EVAL_SIZES=(--max_new_tokens=8 --batch_size=16)
  GOLD_SIZES=(--hidden_size 64 --num_layers 2 --n 16 --repeats 1 --batch_size 4)
  REWARD_SIZES=(--n 32 --batch_size 16)
else
  python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
    echo "error: no CUDA device visible; use --dry-run on a CPU machine" >&2; exit 2; }
  DEVICE=cuda TINY=
  PPO_SIZES=(--batch_size=16 --mini_batch_size=2 --gradient_accumulation_steps=4 --output_max_length=512)
  EVAL_SIZES=(--max_new_tokens=512 --batch_size=16)
  GOLD_SIZES=(--hidden_size 1024 --num_layers 8 --n 805 --repeats 3 --batch_size 16)
  REWARD_SIZES=(--batch_size 256)
fi
# The paper's launch where DeepSpeed can run (a GPU and the package); otherwise the same run without it.
if [ $DRY = 0 ] && python -c "import deepspeed" 2>/dev/null; then
  LAUNCH=(accelerate launch --num_machines 1 --num_processes 1 --config_file configs/zero2-bf16.yaml)
  LAUNCH_NOTE="accelerate launch, configs/zero2-bf16.yaml (DeepSpeed ZeRO-2, bf16)"
else
  LAUNCH=(accelerate launch --num_machines 1 --num_processes 1 --mixed_precision bf16)
  LAUNCH_NOTE="accelerate launch --mixed_precision bf16, without DeepSpeed ($([ $DRY = 1 ] && echo "dry run" ||
    echo "deepspeed not importable here")); configs/zero2-bf16.yaml not tried"
fi
# Peak GPU memory of a phase: nvidia-smi sampled every 200 ms in the background (whole-GPU use, all processes).
watch_memory() {
  if [ $DRY = 0 ] && command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$WORK/logs/mem_$1.log" 2>/dev/null &
    MEM_PID=$!
  else
    MEM_PID=
  fi
}
peak_memory() {  # stops the sampler; prints the phase's peak in MiB, or n/a
  if [ -n "$MEM_PID" ]; then
    kill "$MEM_PID" 2>/dev/null || true; wait "$MEM_PID" 2>/dev/null || true
    sort -n "$WORK/logs/mem_$1.log" | tail -n 1 | sed 's/$/ MiB/'
  else
    echo "n/a"
  fi
}
python - <<'PY' | tee "$WORK/logs/env.log"
import torch, transformers, peft, accelerate
dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
print(f"device: {dev}; torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
      f"accelerate {accelerate.__version__}")
PY

phase "1/5 random-weight models from configs -> $WORK/models"
T=$(date +%s)
python bench/gpu_models.py --assets "$ASSETS" --out "$WORK/models" $TINY | tee "$WORK/logs/models.log"
MODELS_S=$(since $T)

phase "2/5 run_ppo.py: $LAUNCH_NOTE; 2 steps saving each, then resumed to step 3"
T=$(date +%s)
watch_memory ppo
PPO_FLAGS=(--exp_name=gpu_check --model_name="$WORK/models/policy" --seed=42 --save_freq=1 --log_with=none
  --output_dir="$WORK/ppo" --dataset_path=data/train.json --dev_prompt_path=data/dev.json --dev_max_examples=8
  --mixed_precision=bf16 "${PPO_SIZES[@]}" --ppo_epochs=4 --learning_rate=1e-5 --lora_r=8 --lora_alpha=16
  --lora_dropout=0.05 --length_incentive=true --repetition_penalty=true --relevance_scaling=true
  --reward_branching=true --relevance_model="$WORK/models/contriever" --reward_model_batch_size 8)
"${LAUNCH[@]}" run_ppo.py "${PPO_FLAGS[@]}" --overall_steps=2 2>&1 | tee "$WORK/logs/ppo.log"
"${LAUNCH[@]}" run_ppo.py "${PPO_FLAGS[@]}" --overall_steps=3 --resume_from_checkpoint=latest 2>&1 \
  | tee -a "$WORK/logs/ppo.log"
PPO_MEM=$(peak_memory ppo)
PPO_S=$(since $T)

phase "3/5 evaluation.py: two checkpoints, each whole on --device 0"
T=$(date +%s)
watch_memory eval
python evaluation.py --base_model_name="$WORK/models/policy" --peft_model_name "$WORK/ppo_step_1" "$WORK/ppo_step_3" \
  --device 0 --evaluations alpaca --eval_path data/eval.json "${EVAL_SIZES[@]}" 2>&1 | tee "$WORK/logs/eval.log"
EVAL_MEM=$(peak_memory eval)
EVAL_S=$(since $T)

phase "4/5 gold reward throughput on $DEVICE"
T=$(date +%s)
watch_memory gold
python bench/gold_throughput.py --device $DEVICE --tokenizer "$ASSETS/smollm2_tokenizer" --data data/train.json \
  "${GOLD_SIZES[@]}" 2>&1 | tee "$WORK/logs/gold.log"
GOLD_MEM=$(peak_memory gold)
GOLD_S=$(since $T)

phase "5/5 white-box reward throughput on $DEVICE (Contriever-shaped encoder)"
T=$(date +%s)
watch_memory reward
python bench/reward_throughput.py --device $DEVICE --data data/train.json --relevance_model "$WORK/models/contriever" \
  "${REWARD_SIZES[@]}" 2>&1 | tee "$WORK/logs/reward.log"
REWARD_MEM=$(peak_memory reward)
REWARD_S=$(since $T)

echo
echo "===== gpu_check summary$([ $DRY = 1 ] && echo ' (DRY RUN: tiny sizes on CPU)') ====="
cat "$WORK/logs/env.log"
grep -h "^policy:\|^encoder:\|^contriever:" "$WORK/logs/models.log"
echo "launch: $LAUNCH_NOTE"
grep -h "mixed precision\|precision:" "$WORK/logs/ppo.log" | sort -u || true
grep -oE "step [0-9]+/[0-9]+ \\|.*" "$WORK/logs/ppo.log" | sed "s/^/ppo: /"
grep -hoE "rar_max_dot: auto -> [0-9.]+|resumed from .*" "$WORK/logs/ppo.log" | sort -u | sed "s/^/ppo: /"
for step in 1 2 3; do
  if [ -f "$WORK/ppo_step_$step/adapter_model.safetensors" ]; then echo "ppo: checkpoint step $step saved"; fi
done
for step in 1 3; do
  n=$(python -c "import json, sys; print(len(json.load(open(sys.argv[1]))))" \
    "$WORK/ppo_step_$step/alpaca-eval-ppo_step_$step.json" 2>/dev/null || echo 0)
  echo "eval: ppo_step_$step: $n answers"
done
grep -hE "responses/s|speed-up|per response" "$WORK/logs/gold.log" | sed 's/^ */gold: /'
grep -hE "responses/s" "$WORK/logs/reward.log" | sed 's/^/reward: /'
echo "peak GPU memory: ppo $PPO_MEM, eval $EVAL_MEM, gold $GOLD_MEM, reward $REWARD_MEM"
echo "wall: models ${MODELS_S}s, ppo ${PPO_S}s, eval ${EVAL_S}s, gold ${GOLD_S}s, reward ${REWARD_S}s, total $(since $T0)s; logs in $WORK/logs"
