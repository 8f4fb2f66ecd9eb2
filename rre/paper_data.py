"""The paper's data files, fetched from its public repository at a pinned commit and checked before they land.

    python -m rre.paper_data                 # download into data/ (scripts/get_paper_data.sh calls this)
    python -m rre.paper_data --from DIR      # copy from a local folder instead (an offline cluster)

Each file is checked whole (a JSON list of records whose `qtype` is OPENENDED or CONSTRAINED, the record count,
the qtype counts and, where pinned, the sha256) before anything is written; one failed check or download writes
no file and ends with one `error: ...` line. Files are then written atomically into the destination.

What is pinned, and what is not:
- alpacafarm_val.json: 2,000 records (1067 CONSTRAINED / 933 OPENENDED); sha256 computed from the paper's file.
- alpaca_eval.json: 805 records (433 CONSTRAINED / 372 OPENENDED); its sha256 is NOT pinned (no copy of the file
  was at hand to hash), so only the counts are checked.
- alpacafarm_train.json: the paper's README names it, but the paper's repository does not contain it at the
  pinned commit (its data/ holds the two files above), so there is no URL: it is taken only from `--from DIR`,
  checked for its format (counts and hash unpinned), and its absence is reported, not an error.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from rre.data import REPO, DataError, exit_on_data_error
from rre.files import atomic_write

PAPER_REPO = "naver-ai/rethinking-proxy-reward"
PAPER_COMMIT = "70f2ecf2b87a3c56d2ff50ac9213fb55ebdc9bd1"
RAW_URL = f"https://raw.githubusercontent.com/{PAPER_REPO}/{PAPER_COMMIT}/data/{{name}}"
QTYPES = ("CONSTRAINED", "OPENENDED")
GET_HINT = "get the paper's data with `bash scripts/get_paper_data.sh` (or `--from DIR` for a local copy)"


@dataclass(frozen=True)
class Expected:
    """What one file must hold; None: not pinned. `published`: the paper's repository has it (a URL exists)."""

    name: str
    qtypes: dict[str, int] | None
    sha256: str | None
    published: bool

    @property
    def records(self) -> int | None:
        return sum(self.qtypes.values()) if self.qtypes else None


EXPECTED = (
    Expected("alpacafarm_val.json", {"CONSTRAINED": 1067, "OPENENDED": 933},
             "9e5694362b9b42649a1ac92ccf2b9df929b9c4b7b6c277926b6f432f53837a98", True),
    Expected("alpaca_eval.json", {"CONSTRAINED": 433, "OPENENDED": 372}, None, True),
    Expected("alpacafarm_train.json", None, None, False),
)


def check(data: bytes, expected: Expected, source: str) -> None:
    """The file's content is what the paper published: one DataError line naming the source otherwise."""
    try:
        records = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{source}: not valid JSON ({err}); truncated or not the paper's file") from None
    if not isinstance(records, list):
        raise DataError(f"{source}: expected a JSON list of records")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or rec.get("qtype") not in QTYPES:
            raise DataError(f"{source}: record {i}: field 'qtype': expected OPENENDED or CONSTRAINED")
    counts = Counter(rec["qtype"] for rec in records)
    if expected.qtypes is not None and dict(counts) != expected.qtypes:
        got = ", ".join(f"{counts.get(q, 0)} {q}" for q in QTYPES)
        want = ", ".join(f"{expected.qtypes[q]} {q}" for q in QTYPES)
        raise DataError(f"{source}: {len(records)} records ({got}); the paper's {expected.name} has "
                        f"{expected.records} ({want})")
    digest = hashlib.sha256(data).hexdigest()
    if expected.sha256 is not None and digest != expected.sha256:
        raise DataError(f"{source}: sha256 {digest} differs from the paper's {expected.sha256}")


def download(url: str, timeout: float = 60.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (a fixed https URL)
            return response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise DataError(f"{url}: download failed ({err}); nothing written. Offline? Copy the files from a machine "
                        "that has them and use --from DIR") from None


def gather(source_dir: Path | None, expected: Sequence[Expected],
           fetch: Callable[[str], bytes] = download) -> tuple[dict[str, bytes], list[str]]:
    """Every file's bytes, checked; nothing is written here. Returns them and notes on what was skipped."""
    found: dict[str, bytes] = {}
    notes: list[str] = []
    for exp in expected:
        if source_dir is not None:
            path = source_dir / exp.name
            if not path.is_file():
                if exp.published:
                    raise DataError(f"--from {source_dir}: no {exp.name}; nothing written")
                notes.append(f"{exp.name}: not in {source_dir}; skipped (the paper's repository does not publish it)")
                continue
            data, where = path.read_bytes(), str(path)
        elif exp.published:
            where = RAW_URL.format(name=exp.name)
            data = fetch(where)
        else:
            notes.append(f"{exp.name}: not in {PAPER_REPO} at {PAPER_COMMIT[:7]}; pass --from DIR with a copy")
            continue
        check(data, exp, where)
        found[exp.name] = data
    return found, notes


def get_paper_data(dest: Path, source_dir: Path | None = None, expected: Sequence[Expected] = EXPECTED,
                   fetch: Callable[[str], bytes] = download) -> list[Path]:
    """Check every file first, then write each atomically into `dest`."""
    if source_dir is not None and not source_dir.is_dir():
        raise DataError(f"--from {source_dir}: no such folder")
    found, notes = gather(source_dir, expected, fetch)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in found.items():
        atomic_write(dest / name, data)
        written.append(dest / name)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return written


PAPER_EVAL_PATH = "data/alpaca_eval.json"  # relative, as the paper's evaluation.py and eval_monotonicity.py read it


def eval_file(flag: str, path: str) -> None:
    """The paper's eval file, when it is the one asked for and is missing: one line saying how to get it."""
    if path == PAPER_EVAL_PATH and not Path(path).is_file():
        raise DataError(f"--{flag} {path}: no such file; get the paper's data with `bash scripts/get_paper_data.sh`, "
                        "or pass --eval_path data/eval.json (30 offline instructions)")


def require_data_file(flag: str, path: str) -> None:
    """A benchmark's data file, or one line saying how to get the paper's data and exit 2 (benches read data/)."""
    if not Path(path).is_file():
        print(f"error: --{flag} {path}: no such file; get the paper's data with `bash scripts/get_paper_data.sh`",
              file=sys.stderr)
        sys.exit(2)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fetch and check the paper's data files into data/.")
    parser.add_argument("--from", dest="source_dir", default=None, help="copy from this local folder instead")
    parser.add_argument("--dest", default=str(REPO / "data"), help="where the files go (default: data/)")
    args = parser.parse_args(argv)
    with exit_on_data_error():
        written = get_paper_data(Path(args.dest), Path(args.source_dir) if args.source_dir else None)
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
