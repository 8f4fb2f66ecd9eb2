"""Write docs/flags.md from every command's own `--help`, so the flag reference and `--help` cannot disagree.

    python scripts/write_flag_docs.py            # rewrite docs/flags.md
    python scripts/write_flag_docs.py --check    # exit 1 when docs/flags.md is stale (tests/test_flag_docs.py)

The help text comes from the flag dataclasses (HfArgumentParser); each command runs in its own process, so this
script imports none of them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "flags.md"
# (command as a user types it, argv after the interpreter)
COMMANDS = [
    ("run_ppo.py", ["run_ppo.py"]),
    ("run_grpo.py", ["run_grpo.py"]),
    ("evaluation.py", ["evaluation.py"]),
    ("eval_monotonicity.py", ["eval_monotonicity.py"]),
    ("score_outputs.py", ["score_outputs.py"]),
    ("prescreen.py", ["prescreen.py"]),
    ("best_of_n.py", ["best_of_n.py"]),
    ("annotate.py", ["annotate.py"]),
    ("train_reward_model.py", ["train_reward_model.py"]),
    ("summarize_run.py", ["summarize_run.py"]),
    ("design_ladder.py", ["design_ladder.py"]),
    ("python -m rre.offline_models", ["-m", "rre.offline_models"]),
    ("python -m rre.checkpoints", ["-m", "rre.checkpoints"]),
]


def help_text(argv: list[str]) -> str:
    """One command's --help at a fixed width, with this checkout's and this user's paths written portably."""
    env = {**os.environ, "COLUMNS": "120", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, *argv, "--help"], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(argv)} --help exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    text = proc.stdout.replace(f"{ROOT}/", "").replace(str(ROOT), ".").replace(str(Path.home()), "~")
    cache = os.environ.get("RRE_CACHE")
    return text.replace(cache, "$RRE_CACHE") if cache else text


def render() -> str:
    present = [(name, argv) for name, argv in COMMANDS if argv[0] == "-m" or (ROOT / argv[0]).is_file()]
    with ThreadPoolExecutor(max_workers=2) as pool:
        texts = list(pool.map(lambda c: help_text(c[1]), present))
    parts = ["# Flag reference", "",
             "Written by `python scripts/write_flag_docs.py` from each command's `--help` (the flag dataclasses);",
             "`tests/test_flag_docs.py` fails when this page is stale. Booleans take `--x`, `--x true|false` or `--no_x`.",
             ""]
    parts += [f"- [`{name}`](#{name.replace(' ', '-').replace('/', '').replace('.', '').lower()})" for name, _ in present]
    for (name, _), text in zip(present, texts):
        parts += ["", f"## {name}", "", "```text", text.rstrip(), "```"]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/flags.md differs from --help")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        stale = not DOC.is_file() or DOC.read_text() != text
        print(f"{DOC.relative_to(ROOT)} is {'stale: run python scripts/write_flag_docs.py' if stale else 'up to date'}")
        sys.exit(1 if stale else 0)
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)} ({text.count(chr(10))} lines)")


if __name__ == "__main__":
    main()
