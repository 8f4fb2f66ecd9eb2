"""run_ppo.py that SIGKILLs itself while saving the checkpoint named by its first argument: after the checkpoint's
files are written, before the rename that makes it a checkpoint (tests/test_kill_resume.py).

    python tests/kill_during_save.py run_step_2 --model_name=... --output_dir=.../run ...
"""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rre.run_state  # noqa: E402

target = sys.argv.pop(1)
rename = rre.run_state.replace_dir


def rename_or_die(tmp, final, kind):
    if Path(final).name == target:
        os.kill(os.getpid(), signal.SIGKILL)
    return rename(tmp, final, kind)


rre.run_state.replace_dir = rename_or_die

import run_ppo  # noqa: E402

run_ppo.main(sys.argv[1:])
