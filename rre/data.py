"""Loading and validating instruction files (the paper's AlpacaFarm format and its variants).

A record has either `instruction` (+ optional `input`) or the seed's single `input` field, which holds the
instruction and, after "\\n\\n### Input:\\n", its input. `output` is the reference answer; `qtype` is
OPENENDED or CONSTRAINED (needed only when the reward branches on it). Files may be a JSON array or JSONL;
anything else is read with `datasets.load_dataset` (a local dataset folder or a hub name).

Bad input raises DataError (errors.py) with one line naming the file, the record and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rre.errors import DataError
from rre.files import read_json_records

REPO = Path(__file__).resolve().parents[1]  # the checkout: default data paths are relative to it
QTYPES = ("OPENENDED", "CONSTRAINED")
SEED_INPUT_SEPARATOR = "\n\n### Input:\n"
# The paper's alpaca template's system line and role names (rre/prompts.py builds the prompts from them): the
# reward's query and the gold's user text are taken from a record's text by removing them, as the paper's code did.
ALPACA_SYSTEM = ("Below is an instruction that describes a task. "
                 "Write a response that appropriately completes the request.")
ALPACA_ROLES = ("### Instruction", "### Response")
INPUT_MARKER = SEED_INPUT_SEPARATOR.lstrip("\n")


def reward_query(message: str, system: str = ALPACA_SYSTEM, roles: tuple[str, str] = ALPACA_ROLES) -> str:
    """The query text QR compares a response with, taken from the user message as the paper's reward took it from
    its prompt: the template's system text removed, the text between each user role and the next assistant role
    kept, its input marker made a space, `</s>` dropped, ' : ' made one space, newlines, spaces and colons stripped
    from both ends, the pieces joined and every whitespace run made one space."""
    text = message.replace(system, "") if system else message
    pieces = []
    for part in text.split(roles[0]):
        if not part.strip():
            continue
        part = part.split(roles[1])[0]
        part = part.replace(INPUT_MARKER, " ").replace("</s>", "").replace("\n ", "\n")
        pieces.append(part.replace(" : ", " ").strip("\n: "))
    return re.sub(r"\s+", " ", " ".join(pieces) + " ").strip()


def gold_query(message: str) -> str:
    """The user text the paper's Starling call read: the alpaca system line removed, its role names and the input
    marker each made a space, "\\n " made "\\n", and newlines, spaces and colons stripped from both ends (inner
    whitespace kept)."""
    text = message.replace(ALPACA_SYSTEM, "").replace(ALPACA_ROLES[0], " ")
    text = text.replace(INPUT_MARKER, " ").replace("\n ", "\n")
    return text.replace(ALPACA_ROLES[1], " ").strip("\n: ")


@dataclass(frozen=True)
class Example:
    """One instruction with what the reward needs beside the prompt: never re-parsed from prompt text."""

    instruction: str
    input: str = ""
    reference: str = ""
    qtype: str | None = None

    @property
    def query(self) -> str:
        """The query text the relevance feature compares with, taken from the user message as the paper's reward
        took it (`reward_query`: instruction and input, markers and end colons dropped, whitespace collapsed)."""
        return reward_query(self.seed_input)

    @property
    def loose_key(self) -> str:
        """Instruction and input, whitespace collapsed: how an outputs file's instruction is matched loosely."""
        return " ".join(f"{self.instruction} {self.input}".split())

    @property
    def user_turn(self) -> str:
        """What a gold reward model reads as the user's turn: the instruction, then its input after a blank
        line, as a chat shows them. The gold stand-in is trained on the same text it is later scored with."""
        return f"{self.instruction}\n\n{self.input}" if self.input else self.instruction

    @property
    def seed_input(self) -> str:
        """The instruction in the paper's single-field form (the key outputs are joined on)."""
        return f"{self.instruction}{SEED_INPUT_SEPARATOR}{self.input}" if self.input else self.instruction


def lone_surrogate(value: Any) -> tuple[str, int] | None:
    """(the surrogate, its character index) of the first string in `value` (a JSON value: dict keys, list items,
    nested) that is not valid Unicode: JSON's "\\ud800" escape without its pair decodes to a lone surrogate, which
    no UTF-8 file, tokenizer or encoder can take. None when every string is valid."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            return value[err.start], err.start
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = lone_surrogate(key) if isinstance(key, str) else None
        found = found or lone_surrogate(item)
        if found:
            return found
    return None


def check_unicode(rec: dict[str, Any], where: str) -> None:
    """Every field of a record is valid Unicode text, or one line naming the record and the field."""
    for name, value in rec.items():
        found = lone_surrogate(name) or lone_surrogate(value)
        if found:
            char, index = found
            label = name.encode("utf-8", "backslashreplace").decode("utf-8")
            raise DataError(f"{where}: field '{label}': not valid Unicode (a lone surrogate \\u{ord(char):04x} at "
                            f"character {index}, from a JSON escape without its pair)")


def _field(rec: dict[str, Any], name: str, where: str) -> str:
    value = rec.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(f"{where}: field '{name}': expected a string, got {type(value).__name__}")
    return value


def parse_record(rec: Any, where: str, require_qtype: bool = False, require_reference: bool = True) -> Example:
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    check_unicode(rec, where)
    if "instruction" in rec:
        instruction, inp = _field(rec, "instruction", where), _field(rec, "input", where)
        field = "instruction"
    elif "input" in rec:
        instruction, _, inp = _field(rec, "input", where).partition(SEED_INPUT_SEPARATOR)
        field = "input"
    else:
        raise DataError(f"{where}: field 'instruction': missing (a record needs 'instruction' or 'input')")
    if not instruction.strip():
        raise DataError(f"{where}: field '{field}': empty instruction")
    if require_reference and "output" not in rec:
        raise DataError(f"{where}: field 'output': missing (the reference answer)")
    reference = _field(rec, "output", where)
    qtype = rec.get("qtype")
    if qtype is None and require_qtype:
        raise DataError(f"{where}: field 'qtype': missing (needed with --reward_branching=true; add it with: "
                        "python annotate.py --input_path FILE --output_path ANNOTATED.json --classifier_dir DIR)")
    if qtype is not None and qtype not in QTYPES:
        raise DataError(f"{where}: field 'qtype': unknown value {qtype!r} (expected OPENENDED or CONSTRAINED)")
    return Example(instruction.strip(), inp.strip(), reference, qtype)


def read_records(path: str | Path, split: str = "train") -> list[tuple[str, Any]]:
    """Raw records with a location string each: JSON / JSONL files directly, anything else via datasets."""
    p = Path(path)
    if p.is_file():
        return read_json_records(p)
    if p.suffix in (".json", ".jsonl"):
        raise DataError(f"{path}: file not found")
    import datasets

    try:
        ds = datasets.load_dataset(str(path), split=split)
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as err:
        raise DataError(f"{path}: cannot load as a file or dataset ({type(err).__name__}: {err})".splitlines()[0]) from None
    return [(f"{path}[{split}]: record {i}", rec) for i, rec in enumerate(ds)]


def load_examples(
    path: str | Path, require_qtype: bool = False, require_reference: bool = True, split: str = "train"
) -> list[Example]:
    records = read_records(path, split)
    if not records:
        raise DataError(f"{path}: no records")
    return [parse_record(rec, where, require_qtype, require_reference) for where, rec in records]


def load_outputs(path: str | Path) -> list[dict[str, str]]:
    """An alpaca_eval-style outputs file: a list of {instruction, output, ...}."""
    out = []
    for where, rec in read_records(path):
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        check_unicode(rec, where)
        for name in ("instruction", "output"):
            if not isinstance(rec.get(name), str):
                raise DataError(f"{where}: field '{name}': missing or not a string")
        out.append(rec)
    if not out:
        raise DataError(f"{path}: no records")
    return out


def match_outputs(outputs: list[dict[str, str]], examples: list[Example], outputs_path: str | Path) -> list[int]:
    """For each output, the position of its annotated instruction (qtype, reference) in `examples`, matched by the
    instruction text.

    alpaca_eval outputs carry the instruction either in the seed single-field form or as the bare
    instruction; both are accepted. An instruction the annotated file holds several times (AlpacaEval repeats
    some) is matched occurrence by occurrence: the k-th output of that text goes to the k-th record of it (each
    with its own reference and qtype); outputs beyond its last record go to that last one.
    """
    index: dict[str, list[int]] = {}
    for k, ex in enumerate(examples):
        for key in dict.fromkeys((ex.seed_input, ex.loose_key)):
            index.setdefault(key, []).append(k)
    seen: dict[str, int] = {}
    matched = []
    for i, rec in enumerate(outputs):
        key = rec["instruction"]
        if key not in index:
            key = " ".join(key.replace(SEED_INPUT_SEPARATOR, " ").split())
        if key not in index:
            raise DataError(f"{outputs_path}: record {i}: field 'instruction': not found in the annotated file "
                            f"({rec['instruction'][:60]!r})")
        positions = index[key]
        matched.append(positions[min(seen.get(key, 0), len(positions) - 1)])
        seen[key] = seen.get(key, 0) + 1
    return matched


def join_outputs(outputs: list[dict[str, str]], examples: list[Example], outputs_path: str | Path) -> list[Example]:
    """The annotated example of each output (`match_outputs`): these very objects, in the outputs' order."""
    return [examples[k] for k in match_outputs(outputs, examples, outputs_path)]
