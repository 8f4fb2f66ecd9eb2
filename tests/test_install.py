"""scripts/install.sh picks the torch build for the driver nvidia-smi reports (stand-in nvidia-smi scripts here),
says which in one line, and checks after installing that torch sees the GPU."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

PIN = next(line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("torch=="))
TOOLS = ("bash", "dirname", "grep", "sed", "head")


def bin_dir(tmp_path: Path, smi: str | None) -> str:
    """A PATH of one folder: the tools the script uses, this Python, and a stand-in nvidia-smi printing `smi`
    (none when None), so a real nvidia-smi on the test machine plays no part."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for tool in TOOLS:
        (bin_ / tool).symlink_to(shutil.which(tool))
    (bin_ / "python").symlink_to(sys.executable)
    if smi is not None:
        (bin_ / "nvidia-smi").write_text(f"#!{shutil.which('bash')}\n{smi}\n")
        (bin_ / "nvidia-smi").chmod(0o755)
    return str(bin_)


def install(tmp_path: Path, smi: str | None, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "scripts" / "install.sh"), *args], capture_output=True, text=True,
                          env={"PATH": bin_dir(tmp_path, smi), "HOME": str(tmp_path), **env}, timeout=120)


def header(cuda: str) -> str:
    return (f"echo '| NVIDIA-SMI 570.86.10    Driver Version: 570.86.10    CUDA Version: {cuda}     |'")


@pytest.mark.parametrize("cuda,variant", [("12.8", "cu128"), ("12.9", "cu128"), ("12.6", "cu126"),
                                          ("13.0", "cu130"), ("13.1", "cu130")])
def test_the_driver_picks_the_index(tmp_path, cuda, variant):
    proc = install(tmp_path, header(cuda), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    url = f"https://download.pytorch.org/whl/{variant}"
    assert lines[0] == f"install.sh: {PIN.replace('==', ' ')} from {url} (the driver runs CUDA {cuda}, from nvidia-smi)"
    assert lines[1] == f"python -m pip install -q {PIN} --index-url {url}"
    assert lines[2] == "python -m pip install -q -r requirements.txt"
    assert lines[-1] == "then: torch.cuda.is_available() must be True"


def test_no_driver_takes_the_plain_pin(tmp_path):
    proc = install(tmp_path, None, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:2] == [
        f"install.sh: {PIN.replace('==', ' ')} from PyPI, the CPU build (no nvidia-smi: no NVIDIA driver)",
        f"python -m pip install -q {PIN}"]
    assert "is_available" not in proc.stdout


def test_the_environment_variable_dry_run_and_index_override(tmp_path):
    proc = install(tmp_path, header("12.8"), INSTALL_DRY_RUN="1",
                   TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:2] == [
        f"install.sh: {PIN.replace('==', ' ')} from https://download.pytorch.org/whl/cpu (TORCH_INDEX_URL)",
        f"python -m pip install -q {PIN} --index-url https://download.pytorch.org/whl/cpu"]


@pytest.mark.parametrize("smi,message", [
    (header("11.8"),
     f"error: the driver supports CUDA 11.8; {PIN.replace('==', ' ')} is built for CUDA 12.6 or newer"),
    ("echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.'; exit 9",
     "error: nvidia-smi failed (NVIDIA-SMI has failed because it could not communicate"),
    ("echo 'No devices were found'", "error: nvidia-smi printed no 'CUDA Version: X.Y'"),
])
def test_a_driver_it_cannot_serve_stops_in_one_line(tmp_path, smi, message):
    proc = install(tmp_path, smi, "--dry-run")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith(message), proc.stderr
    assert proc.stdout == ""


def test_the_check_after_installing_names_the_fix(tmp_path):
    """A driver is there but this torch (the CPU build on the test machine) sees no GPU: one line with the fix."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine's torch sees a GPU; the stand-in driver cannot make it fail")
    proc = install(tmp_path, header("12.8"), "--check")
    assert proc.returncode == 1
    err = proc.stderr.strip()
    assert "\n" not in err and err.startswith(f"error: torch {torch.__version__}")
    assert "does not see the GPU; fix: TORCH_INDEX_URL=https://download.pytorch.org/whl/cuXYZ" in err
    assert "(chosen: https://download.pytorch.org/whl/cu128)" in err
    (tmp_path / "none").mkdir()
    proc = install(tmp_path / "none", None, "--check")  # no driver: nothing to check
    assert proc.returncode == 0 and proc.stderr == ""


def test_unknown_argument(tmp_path):
    proc = install(tmp_path, None, "--cuda")
    assert proc.returncode == 2
    assert proc.stderr == "error: unknown argument '--cuda' (expected --dry-run, --check or nothing)\n"
