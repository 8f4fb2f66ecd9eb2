#!/usr/bin/env bash
# The paper's three data files, checked, into data/ (rre/paper_data.py does the work), from
# github.com/naver-ai/rethinking-proxy-reward at commit 70f2ecf (raw.githubusercontent.com URLs):
#   data/alpacafarm_train.json  (git blob d715b1c3...; record form checked, its counts are not published)
#   data/alpacafarm_val.json    (git blob 276c1191...; 2,000: 1067 CONSTRAINED / 933 OPENENDED; sha256 9e569436...)
#   data/alpaca_eval.json       (git blob f77b0e7d...; 805: 433 CONSTRAINED / 372 OPENENDED; sha256 0345509e...)
# A file's git blob id is what `git hash-object FILE` prints; --from DIR applies the same checks.
#
#   bash scripts/get_paper_data.sh              # download
#   bash scripts/get_paper_data.sh --from DIR   # copy from a local folder (offline cluster)
#
# Every file is checked before any is written; a failed or partial fetch writes nothing and says why in one line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# No cd: a relative --from DIR is read from where you typed it.
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec python -m rre.paper_data "$@"
