"""scripts/get_paper_data.sh (rre/paper_data.py): the paper's files are checked whole before any is written."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT

from rre import paper_data
from rre.errors import DataError


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
    """The real table, with the fixture files' blob ids and sha256 in place of the paper's (checked as the real
    ones are)."""
    table = []
    for e in paper_data.EXPECTED:
        data = (src / e.name).read_bytes()
        sha = hashlib.sha256(data).hexdigest() if e.sha256 else None
        table.append(paper_data.Expected(e.name, paper_data.git_blob_id(data), e.qtypes, sha))
    return tuple(table)


def test_the_table_holds_the_papers_blob_ids_counts_and_hashes():
    table = {e.name: e for e in paper_data.EXPECTED}
    assert table["alpacafarm_train.json"].blob == "d715b1c34579bee8002d73d921ca95d97cae091b"
    assert table["alpacafarm_val.json"].blob == "276c11915a76f01576aeacbca8d2cdf03c2aeaa2"
    assert table["alpaca_eval.json"].blob == "f77b0e7d5e114ef6a220436b48b182d055647260"
    assert table["alpaca_eval.json"].sha256 == "0345509e81f53cdb4240f0cc67c66e7b247012d9b0f8dc6c596f1710f0526c6a"
    assert table["alpacafarm_val.json"].qtypes == {"CONSTRAINED": 1067, "OPENENDED": 933}
    assert table["alpaca_eval.json"].qtypes == {"CONSTRAINED": 433, "OPENENDED": 372}
    assert table["alpaca_eval.json"].records == 805 and table["alpacafarm_train.json"].qtypes is None


def test_the_blob_id_is_gits(good):
    """git_blob_id gives what `git hash-object` prints for the same file."""
    path = good / "alpaca_eval.json"
    git = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    assert paper_data.git_blob_id(path.read_bytes()) == git.stdout.strip()


def test_good_files_are_written(good, tmp_path):
    dest = tmp_path / "data"
    written = paper_data.get_paper_data(dest, good, expected_for(good))
    assert sorted(p.name for p in written) == ["alpaca_eval.json", "alpacafarm_train.json", "alpacafarm_val.json"]
    for p in written:
        assert p.read_bytes() == (good / p.name).read_bytes()


def one_more_record(b: bytes) -> bytes:
    """The same file with one more well-formed record: its form and (for train) unpublished counts still pass."""
    recs = json.loads(b)
    return json.dumps(recs + [{"input": "extra", "output": "c", "qtype": "OPENENDED"}]).encode()


@pytest.mark.parametrize("name,damage,message", [
    ("alpaca_eval.json", lambda b: b[: len(b) // 2], "not valid JSON"),
    ("alpaca_eval.json", lambda b: records(433, 371), r"804 records .* has 805 \(433 CONSTRAINED, 372 OPENENDED\)"),
    ("alpacafarm_val.json", lambda b: b.replace(b'"a"', b'"x"', 1), "git blob id [0-9a-f]{40} differs"),
    ("alpacafarm_train.json", lambda b: b.replace(b"OPENENDED", b"OPEN", 1), "record 3: field 'qtype'"),
    ("alpacafarm_train.json", lambda b: b.replace(b'"output": "b", ', b"", 1), "record 3: field 'output': missing"),
    ("alpacafarm_train.json", one_more_record, "git blob id [0-9a-f]{40} differs from the paper's"),
    ("alpacafarm_train.json", lambda b: b + b"\n", "git blob id"),
])
def test_a_damaged_file_is_refused_in_one_line_and_nothing_is_written(good, tmp_path, name, damage, message):
    table = expected_for(good)
    (good / name).write_bytes(damage((good / name).read_bytes()))
    dest = tmp_path / "data"
    with pytest.raises(DataError, match=message) as err:
        paper_data.get_paper_data(dest, good, table)
    assert "\n" not in str(err.value) and name in str(err.value)
    assert not dest.exists()


def test_the_script_from_a_folder_refuses_another_blob_in_one_line(good, tmp_path):
    """The shell entry, end to end, against the real table: the fixture files are not the paper's, so the first
    one read (the train file, well formed) is refused by its blob id in one line, exit 2, nothing written."""
    dest = tmp_path / "data"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "get_paper_data.sh"), "--from", str(good), "--dest",
                           str(dest)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and "alpacafarm_train.json: git blob id" in proc.stderr
    assert "differs from the paper's d715b1c34579bee8002d73d921ca95d97cae091b" in proc.stderr
    assert proc.stdout == "" and not dest.exists()


def test_missing_file_in_from_folder(good, tmp_path):
    table = expected_for(good)
    (good / "alpacafarm_train.json").unlink()
    with pytest.raises(DataError, match="no alpacafarm_train.json; nothing written"):
        paper_data.get_paper_data(tmp_path / "data", good, table)
    assert not (tmp_path / "data").exists()


def test_download_failure_writes_nothing(tmp_path):
    def offline(url):
        raise DataError(f"{url}: download failed (no network); nothing written")

    with pytest.raises(DataError, match="raw.githubusercontent.com/naver-ai/rethinking-proxy-reward/70f2ecf"):
        paper_data.get_paper_data(tmp_path / "data", None, paper_data.EXPECTED, fetch=offline)
    assert not (tmp_path / "data").exists()


def test_download_fetches_all_three_from_the_pinned_commit(good, tmp_path):
    urls = []

    def fetch(url):
        urls.append(url)
        return (good / url.rsplit("/", 1)[1]).read_bytes()

    written = paper_data.get_paper_data(tmp_path / "data", None, expected_for(good), fetch=fetch)
    assert sorted(p.name for p in written) == ["alpaca_eval.json", "alpacafarm_train.json", "alpacafarm_val.json"]
    prefix = f"https://raw.githubusercontent.com/naver-ai/rethinking-proxy-reward/{paper_data.PAPER_COMMIT}/data/"
    assert sorted(urls) == [prefix + n for n in ("alpaca_eval.json", "alpacafarm_train.json", "alpacafarm_val.json")]


SHARED_VAL = ROOT.parent / "shared" / "data" / "alpacafarm_val.json"


def test_the_shared_val_file_is_the_papers(tmp_path):
    """The paper's val file, read in place (a link to it, not a copy), passes every check of the real table: blob
    id, sha256, 2,000 records of the paper's qtypes; one changed byte is refused by its blob id."""
    shared = SHARED_VAL
    if not shared.is_file():
        pytest.skip(f"the paper's val file is not on this machine ({SHARED_VAL})")
    val = next(e for e in paper_data.EXPECTED if e.name == "alpacafarm_val.json")
    data = shared.read_bytes()
    assert paper_data.git_blob_id(data) == val.blob
    src = tmp_path / "src"
    src.mkdir()
    (src / val.name).symlink_to(shared)
    written = paper_data.get_paper_data(tmp_path / "data", src, (val,))
    assert [p.name for p in written] == [val.name] and written[0].read_bytes() == data
    with pytest.raises(DataError, match="git blob id"):
        paper_data.check(data.replace(b'"output": "', b'"output": " ', 1), val, "x")


def test_from_the_destination_itself_writes_nothing(good):
    """`--from data` into data: every file is checked, and none is written onto itself."""
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in good.iterdir()}
    written = paper_data.get_paper_data(good, good, expected_for(good))
    assert len(written) == 3
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in good.iterdir()} == before


def test_another_file_at_the_destination_is_never_replaced(good, tmp_path):
    """A file of the user's where a paper file goes stops everything before anything is written."""
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "alpaca_eval.json").write_text("[]  # my edited copy")
    with pytest.raises(DataError, match="alpaca_eval.json: holds another file than the paper's .* never replaced"):
        paper_data.get_paper_data(dest, good, expected_for(good))
    assert sorted(p.name for p in dest.iterdir()) == ["alpaca_eval.json"]
    assert (dest / "alpaca_eval.json").read_text() == "[]  # my edited copy"
