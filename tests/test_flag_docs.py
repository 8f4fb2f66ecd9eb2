"""docs/flags.md is each command's --help as it is now: a changed flag without the page rewritten fails here."""

import subprocess
import sys

from helpers import ROOT


def test_flag_reference_is_current():
    proc = subprocess.run([sys.executable, "scripts/write_flag_docs.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
