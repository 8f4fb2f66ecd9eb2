"""run_ppo.py with every real optimizer update counted: a global post-step hook on torch optimizers (DeepSpeed's
ZeRO optimizer steps the wrapped torch Adam, so it is counted too). Prints one line per process at the end.
Used by tests/test_paper_seams.py under plain python and under accelerate launch."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torch.optim.optimizer import register_optimizer_step_post_hook  # noqa: E402

import run_ppo  # noqa: E402

calls: list[int] = []
register_optimizer_step_post_hook(lambda optimizer, args, kwargs: calls.append(1))
run_ppo.main(sys.argv[1:])
print(f"counted optimizer.step calls: {len(calls)}", flush=True)
