"""The paper's three data files, fetched from its public repository at a pinned commit and checked before they land.

    python -m rre.paper_data                 # download into data/ (scripts/get_paper_data.sh calls this)
    python -m rre.paper_data --from DIR      # copy from a local folder instead (an offline cluster)

Each file is identified by its git blob id at the pinned commit (`git hash-object FILE` prints it), so a copy from
anywhere is checked against the same bytes the paper's repository holds. Before that, each file is read as the
project reads it (a JSON list of records, each with an instruction, a reference `output` and a `qtype` of OPENENDED
or CONSTRAINED), and its qtype counts are checked where the paper's are known, so a wrong file says what is wrong
with it. One failed check or download writes no file and ends with one `error: ...` line; then every file is
written atomically into the destination.

| file | records (qtypes) | blob id | sha256 |
| alpacafarm_train.json | not published: checked by blob id and record form | d715b1c3... | - |
| alpacafarm_val.json | 2,000 (1067 CONSTRAINED / 933 OPENENDED) | 276c1191... | 9e569436... |
| alpaca_eval.json | 805 (433 CONSTRAINED / 372 OPENENDED) | f77b0e7d... | 0345509e... |
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from rre.data import QTYPES, REPO, parse_record
from rre.errors import DataError, exit_on_data_error
from rre.files import atomic_write, parse_json

PAPER_REPO = "naver-ai/rethinking-proxy-reward"
PAPER_COMMIT = "70f2ecf2b87a3c56d2ff50ac9213fb55ebdc9bd1"
RAW_URL = f"https://raw.githubusercontent.com/{PAPER_REPO}/{PAPER_COMMIT}/data/{{name}}"
GET_HINT = "get the paper's data with `bash scripts/get_paper_data.sh` (or `--from DIR` for a local copy)"


@dataclass(frozen=True)
class Expected:
    """What one file must be: its git blob id at the pinned commit, and where known its qtype counts and sha256."""

    name: str
    blob: str
    qtypes: dict[str, int] | None = None
    sha256: str | None = None

    @property
    def records(self) -> int | None:
        return sum(self.qtypes.values()) if self.qtypes else None


EXPECTED = (
    Expected("alpacafarm_train.json", "d715b1c34579bee8002d73d921ca95d97cae091b"),
    Expected("alpacafarm_val.json", "276c11915a76f01576aeacbca8d2cdf03c2aeaa2",
             {"CONSTRAINED": 1067, "OPENENDED": 933},
             "9e5694362b9b42649a1ac92ccf2b9df929b9c4b7b6c277926b6f432f53837a98"),
    Expected("alpaca_eval.json", "f77b0e7d5e114ef6a220436b48b182d055647260",
             {"CONSTRAINED": 433, "OPENENDED": 372},
             "0345509e81f53cdb4240f0cc67c66e7b247012d9b0f8dc6c596f1710f0526c6a"),
)


def git_blob_id(data: bytes) -> str:
    """The id git gives these bytes as a file (`git hash-object`): sha1 of a "blob <size>\\0" header and the bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def check(data: bytes, expected: Expected, source: str) -> None:
    """The file's content is what the paper published: one DataError line naming the source otherwise."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{source}: not valid UTF-8 ({err}); truncated or not the paper's file") from None
    records = parse_json(text, source)
    if not isinstance(records, list):
        raise DataError(f"{source}: expected a JSON list of records")
    for i, rec in enumerate(records):
        parse_record(rec, f"{source}: record {i}", require_qtype=True)
    counts = Counter(rec["qtype"] for rec in records)
    if expected.qtypes is not None and dict(counts) != expected.qtypes:
        got = ", ".join(f"{counts.get(q, 0)} {q}" for q in sorted(QTYPES))
        want = ", ".join(f"{expected.qtypes[q]} {q}" for q in sorted(QTYPES))
        raise DataError(f"{source}: {len(records)} records ({got}); the paper's {expected.name} has "
                        f"{expected.records} ({want})")
    blob = git_blob_id(data)
    if blob != expected.blob:
        raise DataError(f"{source}: git blob id {blob} differs from the paper's {expected.blob} "
                        f"({expected.name} at {PAPER_COMMIT[:7]}); not the paper's file")
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
           fetch: Callable[[str], bytes] = download) -> dict[str, bytes]:
    """Every file's bytes, checked; nothing is written here."""
    found: dict[str, bytes] = {}
    for exp in expected:
        if source_dir is not None:
            path = source_dir / exp.name
            if not path.is_file():
                raise DataError(f"--from {source_dir}: no {exp.name}; nothing written")
            data, where = path.read_bytes(), str(path)
        else:
            where = RAW_URL.format(name=exp.name)
            data = fetch(where)
        check(data, exp, where)
        found[exp.name] = data
    return found


def get_paper_data(dest: Path, source_dir: Path | None = None, expected: Sequence[Expected] = EXPECTED,
                   fetch: Callable[[str], bytes] = download) -> list[Path]:
    """Check every file first, then write each atomically into `dest`. A file already there with the same bytes
    (the `--from` folder being `dest` itself included) is left as it is; one with other bytes is never replaced
    (it is not the paper's file, so it may be yours): that stops everything before anything is written."""
    if source_dir is not None and not source_dir.is_dir():
        raise DataError(f"--from {source_dir}: no such folder")
    found = gather(source_dir, expected, fetch)
    for name, data in found.items():
        target = dest / name
        if target.is_file() and target.read_bytes() != data:
            raise DataError(f"{target}: holds another file than the paper's {name} (blob "
                            f"{git_blob_id(target.read_bytes())[:12]}); it is never replaced: move it away first; "
                            "nothing written")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in found.items():
        if not (dest / name).is_file():
            atomic_write(dest / name, data)
        written.append(dest / name)
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
