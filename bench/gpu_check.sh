#!/usr/bin/env bash
# One prepared GPU run (at most ~8 minutes on one H100/H200): the project's GPU code paths at real shapes, with
# random-weight models built from configs (no downloads, no model files), ending in one summary block.
#   1. models: a ~1.1B Llama-shaped policy (TinyLlama's shape, SmolLM2's tokenizer) and a random-weight
#      all-MiniLM-L6-v2 relevance encoder (bench/gpu_models.py)
#   2. run_ppo.py in bf16 for 3 PPO steps with the paper's batch settings (batch 16, mini-batch 2, gradient
#      accumulation 4, 4 PPO epochs) and 512-token rollouts, full white-box reward; prints the step split
#   3. bench/gold_throughput.py --device cuda (a small Starling-layout Llama RM, hidden 1024 x 8 layers)
#   4. bench/reward_throughput.py --device cuda (the white-box reward with the relevance encoder on the GPU)
#
# Needs: torch (CUDA), transformers, peft, accelerate, sentence-transformers; plus what bench/gpu_prepare.sh puts
# in .gpu_assets/ (tokenizer files) and .whl/ (nltk, rich wheels, installed offline if missing). Carry both.
#
#   bash bench/gpu_prepare.sh               # here, once: assets and wheels (git-ignored)
#   bash bench/gpu_check.sh                 # on the GPU machine
#   bash bench/gpu_check.sh --dry-run       # the same code paths at tiny sizes on CPU (tests/test_gpu_check.py)
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

phase "0/4 environment"
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
  GOLD_SIZES=(--hidden_size 64 --num_layers 2 --n 16 --repeats 1 --batch_size 4)
  REWARD_SIZES=(--n 32 --batch_size 16)
else
  python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
    echo "error: no CUDA device visible; use --dry-run on a CPU machine" >&2; exit 2; }
  DEVICE=cuda TINY=
  PPO_SIZES=(--batch_size=16 --mini_batch_size=2 --gradient_accumulation_steps=4 --output_max_length=512)
  GOLD_SIZES=(--hidden_size 1024 --num_layers 8 --n 805 --repeats 3 --batch_size 16)
  REWARD_SIZES=(--batch_size 256)
fi
python - <<'PY' | tee "$WORK/logs/env.log"
import torch, transformers, peft, accelerate
dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
print(f"device: {dev}; torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, "
      f"accelerate {accelerate.__version__}")
PY

phase "1/4 random-weight models from configs -> $WORK/models"
T=$(date +%s)
python bench/gpu_models.py --assets "$ASSETS" --out "$WORK/models" $TINY | tee "$WORK/logs/models.log"
MODELS_S=$(since $T)

phase "2/4 run_ppo.py, bf16, 3 PPO steps"
T=$(date +%s)
python run_ppo.py --exp_name=gpu_check --model_name="$WORK/models/policy" --seed=42 --overall_steps=3 \
  --save_freq=0 --log_with=none --output_dir="$WORK/ppo" --dataset_path=data/train.json --mixed_precision=bf16 \
  "${PPO_SIZES[@]}" --ppo_epochs=4 --learning_rate=1e-5 --lora_r=8 --lora_alpha=16 --lora_dropout=0.05 \
  --length_incentive=true --repetition_penalty=true --relevance_scaling=true --reward_branching=true \
  --relevance_model="$WORK/models/encoder" --rar_max_dot=1.0 --reward_model_batch_size 8 \
  2>&1 | tee "$WORK/logs/ppo.log"
PPO_S=$(since $T)

phase "3/4 gold reward throughput on $DEVICE"
T=$(date +%s)
python bench/gold_throughput.py --device $DEVICE --tokenizer "$ASSETS/smollm2_tokenizer" --data data/train.json \
  "${GOLD_SIZES[@]}" 2>&1 | tee "$WORK/logs/gold.log"
GOLD_S=$(since $T)

phase "4/4 white-box reward throughput on $DEVICE"
T=$(date +%s)
python bench/reward_throughput.py --device $DEVICE --data data/train.json --relevance_model "$WORK/models/encoder" \
  "${REWARD_SIZES[@]}" 2>&1 | tee "$WORK/logs/reward.log"
REWARD_S=$(since $T)

echo
echo "===== gpu_check summary$([ $DRY = 1 ] && echo ' (DRY RUN: tiny sizes on CPU)') ====="
cat "$WORK/logs/env.log"
grep -h "^policy:\|^encoder:" "$WORK/logs/models.log"
grep -h "mixed precision\|precision:" "$WORK/logs/ppo.log" | sort -u || true
grep -oE "step [0-9]+/[0-9]+ \\|.*" "$WORK/logs/ppo.log" | sed "s/^/ppo: /"
grep -hE "responses/s|speed-up|per response" "$WORK/logs/gold.log" | sed 's/^ */gold: /'
grep -hE "responses/s" "$WORK/logs/reward.log" | sed 's/^/reward: /'
echo "wall: models ${MODELS_S}s, ppo ${PPO_S}s, gold ${GOLD_S}s, reward ${REWARD_S}s, total $(since $T0)s; logs in $WORK/logs"
