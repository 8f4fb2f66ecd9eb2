"""Add query types (and optionally reference answers) to an instruction file, so that reward branching works on it.

    # train a classifier on annotated instructions (saved as a small folder), then label a new file with it
    python annotate.py --train_path ANNOTATED.json --classifier_dir runs/qtype-classifier
    python annotate.py --input_path my_prompts.jsonl --output_path my_prompts.annotated.jsonl \
        --classifier_dir runs/qtype-classifier
    # or let a causal LM judge (the offline SmolLM2 by default), and write greedy reference answers
    python annotate.py --input_path my_prompts.json --output_path annotated.json --method judge \
        --judge_model MODEL --reference_model MODEL

The output holds the same records in the same order with `qtype` and `qtype_confidence` added; a label that is
already there is kept unless --overwrite_labels. Work in progress is appended to `{output_path}.partial`, so a
killed run resumes where it stopped; the output is written in one atomic step at the end.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from rre import validation
from rre.data import Example, load_examples, parse_record, read_records
from rre.errors import DataError, exit_on_data_error, load_errors
from rre.files import (
    QTYPE_CLASSIFIER,
    atomic_write,
    content_hash,
    file_sha256,
    jsonl_entries,
    jsonl_line,
    refuse_inputs,
    remove_file,
    replaceable,
    to_json,
    write_json,
)
from rre.offline_models import smollm2_path
from rre.precision import resolve_device, resolve_dtype
from rre.qtype import CLASSIFIER_WEIGHTS, QTypeClassifier, QTypeJudge, ReferenceWriter

METHODS = ("classifier", "judge")


@dataclass
class AnnotateArguments:
    input_path: str | None = field(default=None, metadata={"help": "instructions to annotate (JSON/JSONL/dataset)"})
    output_path: str | None = field(default=None, metadata={"help": "where the annotated records go (.jsonl: JSONL)"})
    method: str = field(default="classifier", metadata={"help": f"how to label: one of {METHODS}"})
    classifier_dir: str | None = field(
        default=None, metadata={"help": "a trained classifier folder; with --train_path, it is trained and saved here"})
    train_path: str | None = field(default=None, metadata={"help": "annotated instructions (with qtype) to train on"})
    encoder: str = field(default="offline:all-MiniLM-L6-v2",
                         metadata={"help": "sentence encoder of a new classifier (folder or hub name)"})
    l2: float = field(default=0.1, metadata={"help": "L2 weight of the classifier's logistic regression"})
    cv_folds: int = field(default=5, metadata={"help": "cross-validation folds reported in the classifier's record"})
    seed: int = field(default=0, metadata={"help": "seed of the cross-validation split"})
    judge_model: str | None = field(default=None, metadata={"help": "causal LM judge (default: offline SmolLM2)"})
    judge_calibration: bool = field(
        default=True, metadata={"help": "subtract the label log-odds of a content-free instruction"})
    reference_model: str | None = field(
        default=None, metadata={"help": "causal LM that writes a greedy `output` for records without one"})
    reference_prompt_format: str = field(default="auto", metadata={"help": "auto | alpaca | chat"})
    reference_max_new_tokens: int = field(default=256, metadata={"help": "length limit of a reference answer"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow model code from the hub"})
    overwrite_labels: bool = field(default=False, metadata={"help": "replace qtype labels already in the file"})
    overwrite: bool = field(default=False, metadata={"help": "replace a finished --output_path"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    dtype: str = field(default="auto", metadata={"help": "judge/reference model dtype: auto | bfloat16 | float32"})
    batch_size: int = field(default=16, metadata={"help": "records per model call (and per resume step)"})


def check_flags(args: AnnotateArguments) -> None:
    """Flags and paths, before any file is read."""
    validation.one_of("method", args.method, METHODS)
    validation.one_of("reference_prompt_format", args.reference_prompt_format, ("auto", "alpaca", "chat"))
    for name in ("batch_size", "reference_max_new_tokens"):
        validation.positive(name, getattr(args, name))
    validation.non_negative("l2", args.l2)
    validation.range_flags(args)
    if args.cv_folds < 2:
        raise DataError(f"--cv_folds must be >= 2, got {args.cv_folds}")
    resolve_dtype(args.dtype, "cpu", "--dtype")
    if not args.input_path and not args.train_path:
        raise DataError("--input_path: needed (or --train_path with --classifier_dir to train a classifier only)")
    if args.input_path:
        validation.input_data("input_path", args.input_path)
        if not args.output_path:
            raise DataError("--output_path: needed with --input_path")
        validation.output_file("output_path", args.output_path)
        validation.output_file("output_path (its .partial file)", partial_path(args.output_path))
        inputs = {"input_path": args.input_path, "train_path": args.train_path}
        refuse_inputs("output_path", args.output_path, inputs)
        refuse_inputs("output_path (its .partial file)", partial_path(args.output_path), inputs)
        if Path(args.output_path).exists() and not args.overwrite:
            raise DataError(f"--output_path {args.output_path}: exists (a finished annotation, or a file of yours); "
                            "pass --overwrite=true to replace it, or choose another --output_path")
    if args.train_path:
        validation.input_data("train_path", args.train_path)
        if not args.classifier_dir:
            raise DataError("--classifier_dir: needed with --train_path (where the classifier is saved)")
        validation.output_folder("classifier_dir", args.classifier_dir)
        refuse_inputs("classifier_dir", args.classifier_dir,
                      {"train_path": args.train_path, "input_path": args.input_path}, folder=True)
        replaceable("classifier_dir", args.classifier_dir, QTYPE_CLASSIFIER)
    if args.encoder != AnnotateArguments.encoder:
        validation.model("encoder", args.encoder, marker="config.json")
    for flag in ("judge_model", "reference_model"):
        if getattr(args, flag):
            validation.model(flag, getattr(args, flag))
    if args.reference_model:  # an answer needs room beside its prompt (of at least one token)
        validation.fits_context("reference_model", args.reference_model,
                                {"reference_max_new_tokens": args.reference_max_new_tokens}, prompt_room=1)


def check_labeller(args: AnnotateArguments):
    """What the chosen method needs, checked only when some record needs a label; a saved classifier is read
    now (its weights are small; its encoder loads on first use)."""
    if args.method != "classifier":
        return None
    if not args.classifier_dir:
        raise DataError("--classifier_dir: needed with --method=classifier (train one with --train_path "
                        "ANNOTATED.json --classifier_dir DIR, or use --method=judge)")

    validation.input_folder("classifier_dir", args.classifier_dir)
    try:
        return QTypeClassifier.load(args.classifier_dir, resolve_device(args.device))
    except DataError as err:
        raise DataError(f"--classifier_dir {err}") from None


def read_input(path: str) -> tuple[list[dict[str, Any]], list[Example]]:
    """Every record as read and as parsed: a malformed one stops here, before any model loads."""
    located = read_records(path)
    if not located:
        raise DataError(f"{path}: no records")
    examples = [parse_record(rec, where, require_reference=False) for where, rec in located]
    return [rec for _, rec in located], examples


def partial_path(output_path: str | Path) -> Path:
    return Path(f"{output_path}.partial")


class PartialStore:
    """Finished work, one JSON line per record index, appended beside the output so a killed run resumes.

    The first line is a header naming the input (its records' hash) and the settings; a file with another
    header is from other work and is started over. A torn last line (a kill mid-write) is ignored.
    """

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path, self.header = path, header
        self.done: dict[int, dict[str, Any]] = {}
        if path.is_file():
            self._load()
        self.started = bool(self.done)  # the file is (re)started at the first chunk, once models have loaded

    def _load(self) -> None:
        entries, _ = jsonl_entries(self.path.read_text(encoding="utf-8", errors="replace"))
        if not entries or entries[0] != (1, {"header": self.header}):
            print(f"annotate: {self.path} is from other input or settings; starting over", file=sys.stderr)
            return
        for _, entry in entries[1:]:
            try:
                self.done.setdefault(int(entry.pop("index")), {}).update(entry)
            except (KeyError, TypeError, ValueError, AttributeError):
                continue  # a line that is JSON but not an entry
        if self.done:
            print(f"annotate: resuming from {self.path} ({len(self.done)} records with saved work)", file=sys.stderr)

    def add(self, entries: dict[int, dict[str, Any]]) -> None:
        """Append one chunk's results and make them durable before the next chunk starts."""
        if not self.started:
            self.path.parent.mkdir(parents=True, exist_ok=True)  # checked creatable before any model loaded
            atomic_write(self.path, jsonl_line({"header": self.header}))
            self.started = True
        with open(self.path, "a", encoding="utf-8") as f:
            for index, values in entries.items():
                f.write(jsonl_line({"index": index, **values}))
                self.done.setdefault(index, {}).update(values)
            f.flush()
            os.fsync(f.fileno())

    def has(self, index: int, key: str) -> bool:
        return key in self.done.get(index, {})


def run_chunks(indices: list[int], batch_size: int, work: Callable[[list[int]], dict[int, dict[str, Any]]],
               store: PartialStore, desc: str) -> None:
    """`work` on `indices` a chunk at a time, each chunk saved before the next, under one progress bar."""
    from tqdm import tqdm

    with tqdm(total=len(indices), desc=desc, unit="rec", file=sys.stderr, disable=not indices) as bar:
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            store.add(work(chunk))
            bar.update(len(chunk))


def needs_label(rec: dict[str, Any], overwrite: bool) -> bool:
    return overwrite or rec.get("qtype") is None


def needs_reference(rec: dict[str, Any]) -> bool:
    return not rec.get("output")


def load_judge(args: AnnotateArguments):
    """The causal LM judge (the offline SmolLM2 unless --judge_model)."""
    name = args.judge_model or smollm2_path()
    with load_errors("judge_model", name):
        return QTypeJudge(name, resolve_device(args.device), args.dtype, args.trust_remote_code, args.batch_size,
                          args.judge_calibration)


def train_classifier(args: AnnotateArguments, examples: list[Example]):
    """Train on --train_path, save to --classifier_dir and print the cross-validated figures."""
    model = QTypeClassifier.train(examples, args.train_path, args.encoder, args.seed, args.l2, args.cv_folds,
                                  resolve_device(args.device))
    model.save(args.classifier_dir)
    cv = model.record["cross_validation"]
    per_class = ", ".join(f"{q} precision {cv[q]['precision']:.3f} recall {cv[q]['recall']:.3f}"
                          for q in ("OPENENDED", "CONSTRAINED"))
    print(f"classifier saved to {args.classifier_dir}: {cv['folds']}-fold cross-validated accuracy "
          f"{cv['accuracy']:.3f} on {cv['n']} records (majority class {cv['majority_baseline']:.3f}); {per_class}",
          file=sys.stderr)
    return model


def settings_key(args: AnnotateArguments, records: list[dict[str, Any]]) -> dict[str, Any]:
    """What the saved work depends on: the input records and every flag that changes a label or a reference."""
    digest = content_hash(records)
    labeller: dict[str, Any] = {"method": args.method}
    if args.method == "judge":
        labeller.update(judge_model=args.judge_model, calibration=args.judge_calibration, dtype=args.dtype)
    elif args.classifier_dir and not args.train_path:
        weights = Path(args.classifier_dir) / CLASSIFIER_WEIGHTS
        labeller["classifier_sha256"] = file_sha256(weights) if weights.is_file() else None
    elif args.train_path:
        labeller.update(train_path=args.train_path, encoder=args.encoder, l2=args.l2,
                        train_sha256=file_sha256(args.train_path) if Path(args.train_path).is_file() else None)
    reference = None if not args.reference_model else {
        "model": args.reference_model, "format": args.reference_prompt_format,
        "max_new_tokens": args.reference_max_new_tokens, "dtype": args.dtype}
    return {"input_sha256": digest, "labeller": labeller, "reference": reference,
            "overwrite_labels": args.overwrite_labels}


def label_records(args: AnnotateArguments, records: list[dict], examples: list[Example], store: PartialStore,
                  labeller: Any = None) -> None:
    """qtype and qtype_confidence for every record that needs one and has none saved yet."""
    todo = [i for i, rec in enumerate(records) if needs_label(rec, args.overwrite_labels) and not store.has(i, "qtype")]
    if not todo:
        return
    labeller = labeller or load_judge(args)

    def work(chunk: list[int]) -> dict[int, dict[str, Any]]:
        predictions = labeller.predict([examples[i] for i in chunk])
        return {i: {"qtype": label, "qtype_confidence": round(conf, 4)} for i, (label, conf) in zip(chunk, predictions)}

    run_chunks(todo, args.batch_size, work, store, f"qtype ({args.method})")


def write_references(args: AnnotateArguments, records: list[dict], examples: list[Example],
                     store: PartialStore) -> None:
    """A greedy `output` for every record without one (--reference_model)."""
    todo = [i for i, rec in enumerate(records) if needs_reference(rec) and not store.has(i, "output")]
    if not args.reference_model or not todo:
        return

    with load_errors("reference_model", args.reference_model):
        writer = ReferenceWriter(args.reference_model, args.reference_prompt_format, resolve_device(args.device),
                                 args.dtype, args.trust_remote_code, args.reference_max_new_tokens, args.batch_size)
    print(f"reference answers: {args.reference_model}, prompt format {writer.format.name}, greedy", file=sys.stderr)

    def work(chunk: list[int]) -> dict[int, dict[str, Any]]:
        return {i: {"output": text} for i, text in zip(chunk, writer.write([examples[i] for i in chunk]))}

    run_chunks(todo, args.batch_size, work, store, "reference")


def merged(records: list[dict], store: PartialStore) -> list[dict]:
    """The input records with the saved work added (new keys after the record's own)."""
    return [{**rec, **store.done.get(i, {})} for i, rec in enumerate(records)]


def write_output(path: str, records: list[dict]) -> None:
    """JSONL for a .jsonl name, else a JSON array; atomic either way."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)  # checked creatable before any model loaded
    if Path(path).suffix.lower() == ".jsonl":
        atomic_write(path, "".join(to_json(r, path, indent=None) + "\n" for r in records))
    else:
        write_json(path, records)


def summary(before: list[dict], after: list[dict], args: AnnotateArguments) -> str:
    labelled = [a["qtype"] for b, a in zip(before, after) if needs_label(b, args.overwrite_labels)]
    kept = len(after) - len(labelled)
    refs = sum(1 for b, a in zip(before, after) if needs_reference(b) and a.get("output"))
    counts = ", ".join(f"{labelled.count(q)} {q}" for q in ("OPENENDED", "CONSTRAINED"))
    return (f"annotate: {len(after)} records to {args.output_path}: {len(labelled)} labelled ({counts}), "
            f"{kept} labels kept" + (f", {refs} reference answers written" if args.reference_model else ""))


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    (args,) = validation.parse_flags((AnnotateArguments,), argv, __doc__.splitlines()[0])
    with exit_on_data_error():
        check_flags(args)
        records, examples = read_input(args.input_path) if args.input_path else ([], [])
        training = load_examples(args.train_path, require_qtype=True, require_reference=False) if args.train_path else []
        classifier = None
        if not args.train_path and any(needs_label(r, args.overwrite_labels) for r in records):
            classifier = check_labeller(args)
        # Every input is checked; models load from here on.
        if args.train_path:
            classifier = train_classifier(args, training)
        if not args.input_path:
            return
        store = PartialStore(partial_path(args.output_path), settings_key(args, records))
        label_records(args, records, examples, store, classifier if args.method == "classifier" else None)
        write_references(args, records, examples, store)
        out = merged(records, store)
        write_output(args.output_path, out)
        remove_file(store.path)
    print(summary(records, out, args), file=sys.stderr)


if __name__ == "__main__":
    main()
