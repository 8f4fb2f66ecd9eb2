"""scripts/get_paper_data.sh (rre/paper_data.py): the paper's files are checked whole before any is written."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from rre import paper_data
from rre.data import DataError

ROOT = Path(__file__).resolve().parents[1]


def records(constrained: int, openended: int) -> bytes:
    """A file with the paper's shape: the given number of tiny records of each qtype."""
    recs = ([{"input": f"q{i}", "output": "a", "qtype": "CONSTRAINED"} for i in range(constrained)]
            + [{"input": f"o{i}", "output": "b", "qtype": "OPENENDED"} for i in range(openended)])
    return json.dumps(recs).encode()


@pytest.fixture
def good(tmp_path) -> Path:
    """Files with the paper's real counts (val 1067/933, eval 433/372) and a train file."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "alpacafarm_val.json").write_bytes(records(1067, 933))
    (src / "alpaca_eval.json").write_bytes(records(433, 372))
    (src / "alpacafarm_train.json").write_bytes(records(3, 2))
    return src


def expected_for(src: Path) -> tuple[paper_data.Expected, ...]:
    """The real table, with the val file's pinned hash swapped for the fixture's (the real file is not here)."""
    val = hashlib.sha256((src / "alpacafarm_val.json").read_bytes()).hexdigest()
    return tuple(paper_data.Expected(e.name, e.qtypes, val if e.sha256 else None, e.published)
                 for e in paper_data.EXPECTED)


def test_the_table_holds_the_papers_counts():
    table = {e.name: e for e in paper_data.EXPECTED}
    assert table["alpacafarm_val.json"].qtypes == {"CONSTRAINED": 1067, "OPENENDED": 933}
    assert table["alpaca_eval.json"].qtypes == {"CONSTRAINED": 433, "OPENENDED": 372}
    assert table["alpaca_eval.json"].records == 805 and len(table["alpacafarm_val.json"].sha256) == 64


def test_good_files_are_written(good, tmp_path):
    dest = tmp_path / "data"
    written = paper_data.get_paper_data(dest, good, expected_for(good))
    assert sorted(p.name for p in written) == ["alpaca_eval.json", "alpacafarm_train.json", "alpacafarm_val.json"]
    for p in written:
        assert p.read_bytes() == (good / p.name).read_bytes()


@pytest.mark.parametrize("name,damage,message", [
    ("alpaca_eval.json", lambda b: b[: len(b) // 2], "not valid JSON"),
    ("alpaca_eval.json", lambda b: records(433, 371), r"804 records .* has 805 \(433 CONSTRAINED, 372 OPENENDED\)"),
    ("alpacafarm_val.json", lambda b: b.replace(b'"a"', b'"x"', 1), "sha256"),
    ("alpacafarm_train.json", lambda b: b.replace(b"OPENENDED", b"OPEN", 1), "record 3: field 'qtype'"),
])
def test_a_damaged_file_is_refused_in_one_line_and_nothing_is_written(good, tmp_path, name, damage, message):
    table = expected_for(good)
    (good / name).write_bytes(damage((good / name).read_bytes()))
    dest = tmp_path / "data"
    with pytest.raises(DataError, match=message) as err:
        paper_data.get_paper_data(dest, good, table)
    assert "\n" not in str(err.value) and name in str(err.value)
    assert not dest.exists() or not any(dest.iterdir())


def test_the_script_from_a_folder(good, tmp_path):
    """The shell entry, end to end: the fixture val file is not the paper's (hash), so it is refused, nothing written;
    the message is one line naming the file."""
    dest = tmp_path / "data"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "get_paper_data.sh"), "--from", str(good), "--dest",
                           str(dest)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: ") and "alpacafarm_val.json: sha256" in proc.stderr
    assert not dest.exists()


def test_missing_published_file_in_from_folder(good, tmp_path):
    (good / "alpaca_eval.json").unlink()
    with pytest.raises(DataError, match="no alpaca_eval.json; nothing written"):
        paper_data.get_paper_data(tmp_path / "data", good, expected_for(good))


def test_download_failure_writes_nothing(tmp_path):
    def offline(url):
        raise DataError(f"{url}: download failed (no network); nothing written")

    with pytest.raises(DataError, match="raw.githubusercontent.com/naver-ai/rethinking-proxy-reward/70f2ecf"):
        paper_data.get_paper_data(tmp_path / "data", None, paper_data.EXPECTED, fetch=offline)
    assert not (tmp_path / "data").exists()


def test_download_path_checks_and_writes(good, tmp_path, capsys):
    def fetch(url):
        return (good / url.rsplit("/", 1)[1]).read_bytes()

    written = paper_data.get_paper_data(tmp_path / "data", None, expected_for(good), fetch=fetch)
    assert sorted(p.name for p in written) == ["alpaca_eval.json", "alpacafarm_val.json"]
    assert "alpacafarm_train.json: not in naver-ai/rethinking-proxy-reward" in capsys.readouterr().err


def test_the_shared_val_file_matches_the_pinned_hash():
    shared = Path("/work/shared/data/alpacafarm_val.json")
    if not shared.is_file():
        pytest.skip("the paper's val file is not on this machine")
    paper_data.check(shared.read_bytes(), paper_data.EXPECTED[0], str(shared))
