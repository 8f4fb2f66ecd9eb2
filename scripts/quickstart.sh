#!/usr/bin/env bash
# The whole reverse-reward-engineering loop, offline, on a laptop CPU, in one command:
#   1. prepare the offline default models (SmolLM2-135M-Instruct policy, all-MiniLM-L6-v2 encoder)
#   2. train two offline gold stand-ins (Bradley-Terry reward models; the paper's gold is Starling-RM-34B): the
#      truncation-neutral default, and the `corruptions` recipe, which reads whether an answer was cut off
#   3. PPO against the full white-box reward (LI, RP, relevance, branching), CPU accelerate config, saving
#      {run}/policy_step_N every SAVE_FREQ steps: a short run that shows the loop works end to end
#   4. answer the eval set with every checkpoint (AlpacaEval-format outputs)
#   5. monotonicity: proxy vs gold per checkpoint, split by cut vs finished answers, plot
#   6. SuperNI ROUGE-L of the final policy on the shipped fixture
#   7. the measurement: best-of-n on the held-out eval prompts (n answers drawn once; each design's proxy picks
#      its best; both golds score the picks), full vs li paired by prompt, with intervals
#   8. print a summary
# Every artefact lands under RUN_DIR; a re-run reuses finished phases and resumes an interrupted one.
#
#   bash scripts/quickstart.sh                     # default: about 15 min on a 2-core CPU
#   PROFILE=smoke bash scripts/quickstart.sh       # a few minutes; the test suite runs this
#   RUN_DIR=runs/my_try bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
PROFILE=${PROFILE:-default}
RUN_DIR=${RUN_DIR:-runs/quickstart}
case "$PROFILE" in
  default) STEPS=8 SAVE_FREQ=4 BATCH=8 MINI_BATCH=2 GRAD_ACC=2 NEW_TOKENS=64 EVAL_TOKENS=128 LR=3e-4
           GOLD_ARGS=() SUPERNI_INSTANCES=100 BON_PROMPTS=30 BON_N=8 ;;
  smoke)   STEPS=2 SAVE_FREQ=1 BATCH=4 MINI_BATCH=2 GRAD_ACC=1 NEW_TOKENS=16 EVAL_TOKENS=16 LR=1e-4
           GOLD_ARGS=(--max_pairs 64 --max_length 128) SUPERNI_INSTANCES=2 BON_PROMPTS=4 BON_N=2 ;;
  *) echo "error: PROFILE must be default or smoke, got '$PROFILE'" >&2; exit 2 ;;
esac
# What is done with a response after it is generated (--response_postprocess of run_ppo.py, evaluation.py and
# eval_monotonicity.py): clean cuts every rollout, answer and scored text at the first stop string, as the figures
# in README and docs/performance.md were measured; POSTPROCESS=paper runs the paper's post-processing instead.
POSTPROCESS=${POSTPROCESS:-clean}
mkdir -p "$RUN_DIR"
# Each phase's wall time goes to $RUN_DIR/phase_times.tsv (this run's; a reused phase takes seconds), which the
# summary prints.
TIMES="$RUN_DIR/phase_times.tsv"
: > "$TIMES.partial"
CURRENT="" STARTED=0
phase() {
  local now; now=$(date +%s)
  if [ -n "$CURRENT" ]; then printf '%s\t%s\n' "$CURRENT" $((now - STARTED)) >> "$TIMES.partial"; fi
  CURRENT="$*" STARTED=$now
  if [ -n "$CURRENT" ]; then printf '\n=== [%s] %s\n' "$(date +%H:%M:%S)" "$*"; fi
}

phase "1/8 offline default models"
python -m rre.offline_models  # converts the packaged GGUF once; prints both paths
# Only the last line: importing DeepSpeed may log to stdout on the first conversion.
POLICY=$(python -c 'from rre.offline_models import smollm2_path; print(smollm2_path())' | tail -n 1)

phase "2/8 gold stand-ins -> $RUN_DIR/gold_standin (truncation-neutral), $RUN_DIR/gold_standin_corruptions"
python train_reward_model.py --output_dir "$RUN_DIR/gold_standin" "${GOLD_ARGS[@]}"
python train_reward_model.py --recipe corruptions --output_dir "$RUN_DIR/gold_standin_corruptions" "${GOLD_ARGS[@]}"

phase "3/8 PPO against the white-box reward -> $RUN_DIR/policy_step_N"
if [ -f "$RUN_DIR/policy_final/training_state.json" ]; then
  echo "reusing the finished run in $RUN_DIR/policy_final"
else
  accelerate launch --num_machines 1 --num_processes 1 --config_file configs/zero2-cpu.yaml run_ppo.py \
    --exp_name=quickstart --model_name="$POLICY" --seed=42 --overall_steps=$STEPS --save_freq=$SAVE_FREQ \
    --output_dir="$RUN_DIR/policy" --dataset_path=data/train.json --dev_prompt_path=data/dev.json \
    --output_max_length=$NEW_TOKENS --max_prompt_length=256 --batch_size=$BATCH --mini_batch_size=$MINI_BATCH \
    --gradient_accumulation_steps=$GRAD_ACC --learning_rate=$LR --lora_r=8 --lora_alpha=16 --lora_dropout=0.05 \
    --length_incentive=true --repetition_penalty=true --relevance_scaling=true --reward_branching=true \
    --relevance_model minilm --rar_max_dot=1.0 --response_postprocess=$POSTPROCESS --resume_from_checkpoint=latest
fi

phase "4/8 answer the eval set with every checkpoint"
LISTED="$(python -m rre.checkpoints "$RUN_DIR/policy")"  # complete checkpoints, by step (none: one error line, stop)
mapfile -t CKPTS <<< "$LISTED"
# One process answers them all in turn, each exactly as a process of its own would.
python evaluation.py --base_model_name="$POLICY" --peft_model_name "${CKPTS[@]}" --batch_size=16 \
  --evaluations alpaca --eval_path data/eval.json --max_new_tokens=$EVAL_TOKENS --seed=42 \
  --response_postprocess=$POSTPROCESS

phase "5/8 monotonicity: proxy vs gold across checkpoints"
python eval_monotonicity.py --output_dir="$RUN_DIR" --model_prefix=policy --eval_path data/eval.json \
  --gold_model "$RUN_DIR/gold_standin" --gold_type classifier --all_steps --response_postprocess=$POSTPROCESS \
  --max_new_tokens=$EVAL_TOKENS

phase "6/8 SuperNI ROUGE-L of the final policy (shipped fixture)"
python evaluation.py --base_model_name="$POLICY" --peft_model_name="$RUN_DIR/policy_final" --batch_size=16 \
  --evaluations superni --superni_dir data/superni-fixture --superni_max_instances=$SUPERNI_INSTANCES --seed=42 \
  --response_postprocess=$POSTPROCESS

phase "7/8 best-of-n: li vs full on the held-out eval prompts, judged by both golds"
python best_of_n.py --base_model_name="$POLICY" --eval_path data/eval.json --n_prompts=$BON_PROMPTS --n=$BON_N \
  --max_new_tokens=$EVAL_TOKENS --seed=42 --relevance_model minilm --rar_max_dot=1.0 \
  --response_postprocess=$POSTPROCESS --designs li full --gold_type classifier \
  --gold_model "$RUN_DIR/gold_standin" --gold_model "$RUN_DIR/gold_standin_corruptions" \
  --output_dir "$RUN_DIR/best_of_n"

phase ""  # closes phase 7
mv "$TIMES.partial" "$TIMES"
phase "8/8 summary"
python summarize_run.py --run_dir "$RUN_DIR" | tee "$RUN_DIR/summary.txt"
