"""One PPO step of run_ppo.py's setup (so the LoRA update is not zero), then one rollout through the fast decode
path (its written-out step included), checked in the process that ran it: every parameter after the rollout
equals its value before bit for bit, and the log-probability the decode path sampled each token from equals the
one a plain full forward of the same sequence gives. Prints one JSON line per process. Used by
tests/test_decode.py under plain python and under the two-process DeepSpeed ZeRO-2 launch."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from rre.decode import decode, foldable, lora_merged  # noqa: E402
from rre.decode_step import unsupported  # noqa: E402
from rre.ppo import build_padded_batch, left_pad, response_lengths  # noqa: E402
from run_ppo import parse_args, setup  # noqa: E402

args, ppo_config, reward_config = parse_args(sys.argv[1:])
run = setup(args, ppo_config, reward_config)
trainer, acc = run.trainer, run.accelerator
idx = run.stream.next_indices()
trainer.step([run.train_examples[i] for i in idx], [run.train_prompts[i] for i in idx])

prompts = [run.train_prompts[i] for i in run.stream.next_indices()]
model = trainer.unwrapped
policy, lm = model.policy, model.causal_lm
before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
lora_b = max(float(p.abs().max()) for n, p in before.items() if "lora_B" in n)

ids, mask = left_pad(prompts, trainer.tokenizer.pad_token_id)
seen: dict[tuple[int, int], torch.Tensor] = {}


def observe(rows: torch.Tensor, t: int, logits: torch.Tensor) -> None:
    for row, lp in zip(rows.tolist(), torch.log_softmax(logits, -1)):
        seen[(row, t)] = lp


trainer.model.eval()
with torch.no_grad(), acc.autocast(), lora_merged(policy) as folded:
    out = decode(lm, ids.to(acc.device), mask.to(acc.device), ppo_config.output_max_length,
                 trainer.tokenizer.eos_token_id, trainer.tokenizer.pad_token_id, observe=observe,
                 compact_when_ended=0.1)
unequal = [name for name, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[name])]

# The same sequences through the plain forward (adapter on, not folded): the trainer's scoring forward.
lengths, _ = response_lengths(out, trainer.tokenizer.eos_token_id)  # up to and with EOS, as the trainer cuts them
responses = [row[:max(n, 1)] for row, n in zip(out, lengths)]
logprobs, _, _, _ = trainer.score_forward(build_padded_batch(prompts, responses, trainer.tokenizer.pad_token_id))
diffs = [abs(float(seen[(i, t)][tok]) - float(logprobs[i, t])) for i, r in enumerate(responses)
         for t, tok in enumerate(r.tolist())]
report = json.dumps({"rank": acc.process_index, "processes": acc.num_processes, "folded": folded,
                     "written_out": unsupported(lm) is None,
                     "foldable": foldable(policy), "parameters": len(before), "unequal": unequal,
                     "lora_b_max": lora_b, "tokens": len(diffs), "max_logprob_diff": max(diffs),
                     "mean_logprob_diff": sum(diffs) / len(diffs)})
# One write of the whole line: both ranks share the launcher's stdout pipe, and `print` writes the text and its
# newline separately, so two ranks' reports could land on one line ('{...}{...}'), which failed a fresh-clone run.
sys.stdout.write(report + "\n")
sys.stdout.flush()
