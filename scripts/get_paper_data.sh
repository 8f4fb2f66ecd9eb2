#!/usr/bin/env bash
# The paper's data, checked, into data/ (rre/paper_data.py does the work):
#   data/alpacafarm_val.json  (2,000: 1067 CONSTRAINED / 933 OPENENDED, sha256 pinned)
#   data/alpaca_eval.json     (805: 433 CONSTRAINED / 372 OPENENDED; sha256 unpinned, counts checked)
# from github.com/naver-ai/rethinking-proxy-reward at commit 70f2ecf (raw.githubusercontent.com URLs).
# data/alpacafarm_train.json is named by the paper's README but not in its repository at that commit: copy it
# with --from DIR if you have it (format checked; count and hash unpinned).
#
#   bash scripts/get_paper_data.sh              # download
#   bash scripts/get_paper_data.sh --from DIR   # copy from a local folder (offline cluster)
#
# Every file is checked before any is written; a failed or partial fetch writes nothing and says why in one line.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# No cd: a relative --from DIR is read from where you typed it.
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec python -m rre.paper_data "$@"
