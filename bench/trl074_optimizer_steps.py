"""The paper's stack, checked: optimizer steps and train/eval mode in one TRL 0.7.4 PPO step with the paper's
flags (batch 16, mini-batch 2, gradient_accumulation_steps=4, 4 PPO epochs) on a tiny random GPT-2.

Needs the paper's stack in its own venv (not this project's requirements):
    python -m venv /work/scratch-trl074 && /work/scratch-trl074/bin/pip install trl==0.7.4 transformers==4.35.2 \
        peft==0.6.1 accelerate==0.23.0 'numpy<2' 'datasets==2.15.0' 'pyarrow<17' torch==2.13.0
    /work/scratch-trl074/bin/python bench/trl074_optimizer_steps.py                 # prints 8
    ACCELERATE_GRADIENT_ACCUMULATION_STEPS=1 /work/scratch-trl074/bin/python bench/trl074_optimizer_steps.py  # 32
(`accelerate launch` with the paper's zero2-bf16.yaml exports ACCELERATE_GRADIENT_ACCUMULATION_STEPS=1; accelerate
0.23 cannot run DeepSpeed on a CPU, so on a CPU the variable is set by hand or through a plain accelerate config.)
"""
import os

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from transformers import GPT2Config, GPT2LMHeadModel
from trl import AutoModelForCausalLMWithValueHead, PPOConfig, PPOTrainer

calls = []
register_optimizer_step_post_hook(lambda opt, args, kwargs: calls.append(1))
torch.manual_seed(0)
cfg = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64)
base = GPT2LMHeadModel(cfg)
model = AutoModelForCausalLMWithValueHead.from_pretrained(base)
ref = AutoModelForCausalLMWithValueHead.from_pretrained(GPT2LMHeadModel(cfg))
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({f"w{i}": i for i in range(100)}, unk_token="w1")))
tok.pad_token = tok.eos_token = "w0"
config = PPOConfig(batch_size=16, mini_batch_size=2, gradient_accumulation_steps=4, ppo_epochs=4,
                   learning_rate=1e-5, log_with=None)
tr = PPOTrainer(config, model, ref, tokenizer=tok)
print("env ACCELERATE_GRADIENT_ACCUMULATION_STEPS =", os.environ.get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS"),
      "| accelerator.gradient_accumulation_steps =", tr.accelerator.gradient_accumulation_steps,
      "| distributed_type =", tr.accelerator.distributed_type)
queries = [torch.randint(1, 100, (5,)) for _ in range(16)]
responses = [torch.randint(1, 100, (6,)) for _ in range(16)]
scores = [torch.tensor(float(i)) for i in range(16)]
before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
modes = []
orig = model.forward
def fwd(*a, **k):
    modes.append(model.training if torch.is_grad_enabled() else None)
    return orig(*a, **k)
model.forward = fwd
tr.step(queries, responses, scores)
train_modes = [m for m in modes if m is not None]
print(f"optimizer.step calls with an update in one PPO step: {len(calls)}")
print(f"training forwards: {len(train_modes)}, in train mode: {sum(train_modes)}")
