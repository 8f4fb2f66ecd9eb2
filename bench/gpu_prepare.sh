#!/usr/bin/env bash
# Prepare what bench/gpu_check.sh carries to a GPU machine that has no model files and no internet (run it here,
# on the CPU machine where the offline models are installed):
#   .gpu_assets/smollm2_tokenizer/  SmolLM2's tokenizer and chat template (3.5 MB, no weights)
#   .gpu_assets/minilm/             all-MiniLM-L6-v2's config, pooling and tokenizer files (no weights)
#   .whl/                           wheels of the packages the GPU image may lack (nltk, rich and their
#                                   dependencies; pure Python, plus regex for CPython 3.10-3.13), about 10 MB
# Both folders are git-ignored; pass them as the run's carried paths (64 MiB in all).
#
#   bash bench/gpu_prepare.sh             # assets and wheels
#   bash bench/gpu_prepare.sh --no-wheels # assets only (the dry run needs no wheels)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
ASSETS=${ASSETS:-.gpu_assets}
WHEELS=${WHEELS:-.whl}
mkdir -p "$ASSETS/smollm2_tokenizer" "$ASSETS/minilm"
SMOL=$(python -c 'from rre.offline_models import smollm2_path; print(smollm2_path())' | tail -n 1)
MINI=$(python -c 'from rre.offline_models import minilm_path; print(minilm_path())' | tail -n 1)
for f in tokenizer.json tokenizer_config.json chat_template.jinja special_tokens_map.json; do
  if [ -f "$SMOL/$f" ]; then cp "$SMOL/$f" "$ASSETS/smollm2_tokenizer/"; fi
done
# Everything of MiniLM but its weights (gpu_models.py makes random ones of the same shape).
(cd "$MINI" && find . -type f ! -name '*.safetensors' ! -name '*.bin' ! -name 'README.md' ! -name 'data_config.json' \
   -print0) | while IFS= read -r -d '' f; do mkdir -p "$ASSETS/minilm/$(dirname "$f")"; cp "$MINI/$f" "$ASSETS/minilm/$f"; done
echo "assets: $(du -sh "$ASSETS" | cut -f1) in $ASSETS"
if [ "${1:-}" != "--no-wheels" ]; then
  mkdir -p "$WHEELS"
  # --no-deps with the dependency list spelled out: only these, nothing the GPU image already has (torch, ...).
  python -m pip download -q --no-deps --only-binary=:all: --dest "$WHEELS" \
    nltk click joblib defusedxml tqdm rich markdown-it-py mdurl pygments
  for py in 3.10 3.11 3.12 3.13; do
    python -m pip download -q --no-deps --only-binary=:all: --dest "$WHEELS" --python-version "$py" \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 regex
  done
  echo "wheels: $(du -sh "$WHEELS" | cut -f1) in $WHEELS ($(ls "$WHEELS" | wc -l) files)"
fi
