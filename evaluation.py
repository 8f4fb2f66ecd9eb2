"""Evaluate one checkpoint: AlpacaEval rollouts (for the gold reward model and the alpaca_eval CLI) and the
Super-NaturalInstructions alignment tax.

    python evaluation.py --base_model_name=$BASE --peft_model_name=./alpaca_test_step_500 --batch_size=16 \
        --evaluations alpaca
    python evaluation.py --base_model_name=$BASE --peft_model_name=./alpaca_test_step_5000 --evaluations superni

- The LoRA adapter is merged into the base model (a plain model generates faster than a PeftModel); without
  `--peft_model_name` the base model itself is evaluated. Several adapters (`--peft_model_name A B C`) are
  evaluated one after the other in one process, each exactly as if alone (the base model is reloaded and the
  seed set again for each); only the imports and the start are paid once.
- `alpaca` answers every instruction of `--eval_path` (default the paper's data/alpaca_eval.json; sampling as the
  paper's run_alpaca_eval: temperature 0.7, top_p 1.0, top_k 50 (transformers' default), 512 new tokens) and
  writes `alpaca-eval-{name}.json` into the adapter folder: a list of {instruction, output, generator, dataset}
  that `alpaca_eval --model_outputs` reads. Answers are appended to `alpaca-eval-{name}.partial.jsonl` batch by
  batch, so an interrupted run resumes where it stopped; the final file is written atomically.
- `superni` answers the first `--superni_max_instances` instances of every test task of a local
  allenai/natural-instructions checkout (default data/natural-instructions, where the paper cloned it) greedily and
  scores them with ROUGE-L; it prints which source it scored (fixture or full repository). `--superni_protocol
  paper` (the default) does what the paper's evaluation.py did (`superni_paper_answers`, `score_superni`);
  `project` is this project's variant (best of all references, answers cut at stop strings, left truncation).
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm
from transformers import set_seed

from rre import paper_data, validation
from rre.batching import sorted_batches
from rre.cutoff import CUT_FIELD, was_cut
from rre.data import Example, load_examples
from rre.decode import PromptSeededSampling, Sampling, decode, extra_processors, prompt_seed
from rre.errors import DataError, exit_on_data_error, load_errors
from rre.files import (
    atomic_write,
    check_output_file,
    created_folder,
    json_object_with,
    json_rows_with,
    jsonl_entries,
    jsonl_line,
    read_json,
    read_text,
    refuse_inputs,
    remove_file,
    write_json,
)
from rre.precision import announce, resolve_dtype
from rre.prompts import PROMPT_FORMATS, RESPONSE_POSTPROCESS, PromptFormat, resolve_prompt_format
from rre.validation import given_flags

EVALUATIONS = ("alpaca", "superni")
SUPERNI_URL = "https://github.com/allenai/natural-instructions"
SUPERNI_FIXTURE = "data/superni-fixture"
SUPERNI_PROTOCOLS = ("paper", "project")
SUPERNI_MAX_PROMPT = 512  # the paper's tokenizer call: max_length=512, truncation on the tokenizer's own side



@dataclass
class EvalArguments:
    base_model_name: str = field(metadata={"help": "base (SFT) model: hub name or folder"})
    peft_model_name: list[str] | None = field(
        default=None, metadata={"help": "LoRA adapter folder (a {exp}_step_N checkpoint), or several, answered one "
                                "after the other in one process, each as if alone; none = the base model"}
    )
    evaluations: list[str] = field(
        default_factory=lambda: list(EVALUATIONS), metadata={"help": "alpaca and/or superni (default: both, as the paper)"}
    )
    batch_size: int = field(default=8, metadata={"help": "prompts per generate() call (8 as the paper's "
                                                          "evaluation.py; its README passes 16)"})
    eval_path: str = field(default=paper_data.PAPER_EVAL_PATH, metadata={
        "help": "AlpacaEval instructions (the paper's data/alpaca_eval.json, 805: bash scripts/get_paper_data.sh; "
                "data/eval.json is the 30-instruction offline set)"})
    output_dir: str | None = field(
        default=None, metadata={"help": "where results go (default: the adapter folder, else ./eval_outputs)"}
    )
    prompt_format: str = field(
        default="auto", metadata={"help": "auto (chat when the tokenizer has a chat template, else alpaca) | chat | "
                                  "a template of the paper's by name: alpaca, vicuna_v1.1, llama-2, tulu, zephyr, almost"}
    )
    response_postprocess: str = field(default="paper", metadata={
        "help": "paper (as the paper's evaluation: decode to EOS or the token limit, no stop strings; the answer is "
                "cut only at the template's own stop string and stripped) | clean (a row stops once its text holds a "
                "stop string; the answer is cut at the first one)"})
    max_new_tokens: int = field(default=512, metadata={"help": "AlpacaEval answer length limit"})
    temperature: float = field(default=0.7, metadata={"help": "AlpacaEval sampling temperature"})
    top_p: float = field(default=1.0, metadata={"help": "AlpacaEval nucleus sampling"})
    top_k: int = field(default=50, metadata={"help": "50 as the paper's run_alpaca_eval (it passed no top_k, so "
                                             "transformers 4.x's default 50 applied); 0 = off"})
    seed: int = field(default=42, metadata={"help": "sampling seed"})
    sample_seeding: str = field(default="global", metadata={
        "help": "global: --seed seeds the one random stream all answers draw from, as the paper's script (an "
                "answer's draws depend on its batch) | per_prompt: each prompt draws from its own stream, seeded by "
                "--seed and the prompt's text, so a prompt gets the same random numbers at every checkpoint and in "
                "any batch (common random numbers; --sampler loop)"})
    sampler: str = field(default="loop", metadata={
        "help": "loop: the decode path the PPO rollouts use (rre/decode.py; several times faster on CPU) | generate: "
                "HF generate, as the paper's script. The same distribution, other random draws"})
    overwrite: bool = field(default=False, metadata={"help": "regenerate results that already exist"})
    superni_dir: str = field(
        default="data/natural-instructions",  # relative, as the paper's (cd data && git clone ...)
        metadata={"help": f"local checkout of {SUPERNI_URL} (the paper's place: cd data && git clone ...); "
                  f"{SUPERNI_FIXTURE} is a 3-task fixture for tests"},
    )
    superni_max_instances: int = field(default=100, metadata={"help": "instances per SuperNI test task"})
    superni_max_new_tokens: int = field(default=128, metadata={"help": "SuperNI answer length limit (greedy)"})
    superni_protocol: str = field(default="paper", metadata={
        "help": "paper: as the paper's evaluation.py (prompt truncated to 512 tokens on the tokenizer's default side, "
                "the right; the answer is the decoded output minus the decoded prompt, uncut and unstripped; ROUGE-L "
                "against the first reference) | project: ROUGE-L against the best of all references, answers cut at "
                "stop strings and stripped, over-long prompts lose their beginning (docs/evaluation.md)"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom model code from the hub"})
    # Flags of the paper's script that change nothing here; accepted so its command runs as written.
    baseline_model_file: str | None = field(
        default=None, metadata={"help": "the paper's flag; no effect (the AlpacaEval comparison is scripts/alpaca_eval.sh)"}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "the paper's flag; no effect (set HF_HOME)"})
    device: int = field(default=0, metadata={
        "help": "the GPU (an index) the checkpoint is loaded on, whole (device_map={'': device}), as the paper's "
                "flag; one process per GPU evaluates checkpoints side by side (launch_runs.py). The CPU "
                "when no CUDA device is visible"})
    precision: str = field(
        default="auto", metadata={"help": "auto (bfloat16 where the device runs it natively: a bf16 GPU, a CPU with "
                                  "AVX512-BF16/AMX; else float32) | bfloat16 | float32"})


SAMPLERS = ("loop", "generate")
SAMPLE_SEEDING = ("global", "per_prompt")
ALPACA_ONLY = ("eval_path", "max_new_tokens", "temperature", "top_p", "top_k", "seed", "sample_seeding")
SUPERNI_ONLY = ("superni_dir", "superni_max_instances", "superni_max_new_tokens", "superni_protocol")
NO_EFFECT_FLAGS = {
    "baseline_model_file": "AlpacaEval's comparison with a baseline's outputs is scripts/alpaca_eval.sh",
    "cache_dir": "models load from the Hugging Face cache (HF_HOME) or a folder",
}


# ---------------------------------------------------------------------------------------------------------
# Model, tokenizer, prompt format.


def policy_device(device: int) -> str:
    """Where the checkpoint goes: GPU `device` (the paper's --device), or the CPU when no CUDA device is visible."""
    if not torch.cuda.is_available():
        return "cpu"
    count = torch.cuda.device_count()
    if not 0 <= device < count:
        raise DataError(f"--device {device}: {count} CUDA device(s) visible (0..{count - 1}); pass one of them, "
                        "or set CUDA_VISIBLE_DEVICES")
    return f"cuda:{device}"


def load_policy(base_model_name: str, peft_model_name: str | None = None, trust_remote_code: bool = False,
                precision: str = "auto", device: int = 0):
    """The base model with the adapter merged in, and the tokenizer (the adapter's own if it saved one).

    The whole model goes on one device, as the paper loaded each checkpoint (device_map={"": device}): spread over
    several GPUs, every layer's output would cross between them and the written-out decode step could not run.
    The compute dtype follows precision.py's rule (bf16 only where native). On CPU the adapter is merged in
    float32 and the merged weights are cast afterwards, so bf16 rounding applies once, not to the LoRA delta."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = policy_device(device)
    on_gpu = where != "cpu"
    dtype = resolve_dtype(precision, "cuda" if on_gpu else "cpu")
    announce("evaluation.py:", dtype, precision, where)
    with load_errors("base_model_name", base_model_name):
        model = AutoModelForCausalLM.from_pretrained(
            base_model_name, dtype=dtype if on_gpu else torch.float32, device_map={"": where} if on_gpu else None,
            trust_remote_code=trust_remote_code,
        )
    if peft_model_name:
        from peft import PeftModel

        with load_errors("peft_model_name", peft_model_name):
            model = PeftModel.from_pretrained(model, peft_model_name).merge_and_unload()
    model = model.to(dtype)
    has_own = peft_model_name and (Path(peft_model_name) / "tokenizer_config.json").exists()
    flag, source = ("peft_model_name", peft_model_name) if has_own else ("base_model_name", base_model_name)
    with load_errors(flag, source):
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    tokenizer.truncation_side = "left"  # an over-long prompt keeps its end, where the question is
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def checkpoint_name(base_model_name: str, peft_model_name: str | None) -> str:
    """The generator name: the adapter folder's basename, or the base model's name without an adapter."""
    return Path((peft_model_name or base_model_name).rstrip("/")).name


# ---------------------------------------------------------------------------------------------------------
# Batched generation.


def _eos_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


@torch.inference_mode()
def generate_responses(model, tokenizer, fmt: PromptFormat, prompts: Sequence[str], batch_size: int,
                       max_new_tokens: int, do_sample: bool, temperature: float = 1.0, top_p: float = 1.0,
                       top_k: int = 0, on_batch: Callable[[list[int], list[str]], None] | None = None,
                       desc: str = "generate", sampler: str = "loop", postprocess: str = "paper",
                       seeds: Sequence[int] | None = None) -> list[str]:
    """Answer every prompt; returns the responses in prompt order.

    Prompts are sorted by token length (longest first, so an out-of-memory error shows at once) and batched with
    left padding, then answered through `rre.decode.decode`, the PPO rollouts' decode path, with these sampling
    settings (HF generate with `sampler="generate"`, or for a model whose generation config adds other logits
    processors). Each answer is cut at the first EOS id. `postprocess="paper"` (the paper's evaluation): a row
    runs to EOS or `max_new_tokens`, the answer is decoded without special tokens and `fmt.paper_answer` keeps it
    (cut only at the template's own stop string). `"clean"`: a row also stops, checked every few tokens, once its
    text holds a stop string, and `fmt.clean` strips the answer and cuts it at the first stop string.
    `seeds` (one per prompt): each prompt samples from its own random stream (`PromptSeededSampling`).
    `on_batch(positions, responses, cut)` runs after every batch with the batch's positions in `prompts` and
    whether each answer was cut at the token cap (`rre.cutoff.was_cut`; the alpaca evaluation appends them to its
    partial file).
    """
    # The chat template already contains its special tokens; a named template is plain text.
    add_special = fmt.add_special_tokens
    max_positions = getattr(model.config, "max_position_embeddings", None)
    max_prompt = max_positions - max_new_tokens if max_positions and max_positions > max_new_tokens else None
    lengths = [len(ids) for ids in tokenizer(list(prompts), add_special_tokens=add_special).input_ids]
    truncated = sum(1 for n in lengths if max_prompt and n > max_prompt)
    if truncated:
        print(f"note: {truncated} prompt(s) longer than {max_prompt} tokens lose their beginning", file=sys.stderr)
    eos_ids = _eos_ids(model, tokenizer)
    device = model.get_input_embeddings().weight.device
    sampling = Sampling(do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p)
    others = extra_processors(model.generation_config)
    use_generate = sampler == "generate" or bool(others)
    if seeds is not None and use_generate:
        raise DataError("--sample_seeding per_prompt draws through --sampler loop; HF generate has one random stream"
                        + (f" (the model's generation config sets {', '.join(others)})" if others else ""))
    if others and sampler != "generate":
        print(f"note: the model's generation config sets {', '.join(others)}; answering with HF generate, which "
              "applies them (slower)", file=sys.stderr)
    stops = tuple(fmt.stop_strings) if postprocess == "clean" else ()
    # An answer that ends at a stop string finished (rre.cutoff): under paper, only the template's own one cuts it.
    paper_stop = fmt.template.answer_stop if fmt.template is not None else None
    answer_stops = stops if postprocess == "clean" else tuple(s for s in (paper_stop,) if s)
    generate_kwargs = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": top_k} if do_sample \
        else {"do_sample": False}

    def stopped(tokens: list[int]) -> bool:
        return any(stop in tokenizer.decode(tokens, skip_special_tokens=False) for stop in stops)

    responses: list[str] = [""] * len(prompts)
    with tqdm(total=len(prompts), desc=desc, unit="prompt") as bar:
        for idx in sorted_batches(lengths, batch_size, longest_first=True):
            enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                            add_special_tokens=add_special, truncation=max_prompt is not None,
                            max_length=max_prompt).to(device)
            if use_generate:
                stop_kwargs = {"stop_strings": list(stops), "tokenizer": tokenizer} if stops else {}
                out = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                     **stop_kwargs, **generate_kwargs)
                new_tokens = out[:, enc["input_ids"].shape[1]:]
            else:
                draw = sampling if seeds is None else PromptSeededSampling(sampling, [seeds[i] for i in idx])
                new_tokens = decode(model, enc["input_ids"], enc["attention_mask"], max_new_tokens, sorted(eos_ids),
                                    tokenizer.pad_token_id, draw, stop=stopped if stops else None,
                                    observe=None if seeds is None else draw.observe)
            texts, cut_rows = [], []
            for row in new_tokens.tolist():
                end = next((k for k, t in enumerate(row) if t in eos_ids), len(row))  # the rest is EOS/padding
                raw = tokenizer.decode(row[:end], skip_special_tokens=postprocess != "clean")
                texts.append(fmt.clean(raw) if postprocess == "clean" else fmt.paper_answer(raw))
                cut_rows.append(was_cut(end, end < len(row), max_new_tokens, raw, answer_stops))
            for i, text in zip(idx, texts):
                responses[i] = text
            if on_batch is not None:
                on_batch(idx, texts, cut_rows)
            bar.update(len(idx))
    return responses


# ---------------------------------------------------------------------------------------------------------
# AlpacaEval rollouts.


def alpaca_paths(out_dir: Path, name: str) -> tuple[Path, Path]:
    return out_dir / f"alpaca-eval-{name}.json", out_dir / f"alpaca-eval-{name}.partial.jsonl"


def output_record(example: Example, output: str, generator: str, dataset: str,
                  truncated: bool | None = None) -> dict[str, Any]:
    """One alpaca_eval record. The instruction is the example's seed form, which `data.join_outputs` maps back
    to the annotated example (qtype, reference) and alpaca_eval matches against the reference outputs.
    `truncated` (rre.cutoff.CUT_FIELD: decoding stopped at the token cap) sits beside `output`; alpaca_eval reads
    instruction/output/generator/dataset and carries other fields along unread."""
    record: dict[str, Any] = {"instruction": example.seed_input, "output": output, "generator": generator,
                              "dataset": dataset}
    if truncated is not None:
        record[CUT_FIELD] = truncated
    return record


def read_partial(partial: Path, examples: Sequence[Example]) -> dict[int, dict[str, str]]:
    """Records of an interrupted run, by example index. A torn last line (killed mid-write) is dropped and
    regenerated; a partial file from another eval set is an error."""
    done: dict[int, dict[str, str]] = {}
    entries, torn = jsonl_entries(read_text(partial, "answers so far"))
    for lineno, rec in entries:
        i = rec.pop("index", None) if isinstance(rec, dict) else None
        if not isinstance(i, int) or not 0 <= i < len(examples) or rec.get("instruction") != examples[i].seed_input:
            raise DataError(f"{partial}: line {lineno}: does not match the eval set; rerun with --overwrite")
        done[i] = rec
    if torn:
        print(f"note: {partial.name}: dropped {torn} unreadable line(s) (interrupted write); regenerating them",
              file=sys.stderr)
    return done


def run_alpaca(model, tokenizer, fmt: PromptFormat, args: EvalArguments, out_dir: Path, name: str) -> Path:
    """Answer the eval set into the partial file, then write the final file atomically over any older one:
    with --overwrite the old result stays in place until the new one is complete."""
    final, partial = alpaca_paths(out_dir, name)
    examples = load_examples(args.eval_path, require_reference=False)
    dataset = Path(args.eval_path).stem
    done = read_partial(partial, examples) if partial.exists() and not args.overwrite else {}
    todo = [i for i in range(len(examples)) if i not in done]
    if done:
        print(f"resuming {partial}: {len(done)} done, {len(todo)} to go")
    # Start the partial file afresh from what was read, so a torn last line is not continued; with nothing read
    # there is no partial file until the first batch is answered (a run that fails first leaves none behind).
    if done:
        atomic_write(partial, "".join(jsonl_line({"index": i, **rec}) for i, rec in done.items()))
    else:
        remove_file(partial)
    opened: list[Any] = []  # the partial file, opened for appending at the first answered batch

    def append(positions: list[int], texts: list[str], cut: list[bool] | None = None) -> None:
        if not opened:
            opened.append(partial.open("a", encoding="utf-8"))
        for k, (j, text) in enumerate(zip(positions, texts)):  # positions in `todo`
            i = todo[j]
            done[i] = output_record(examples[i], text, name, dataset, None if cut is None else cut[k])
            opened[0].write(jsonl_line({"index": i, **done[i]}))
        opened[0].flush()

    try:
        if todo:
            set_seed(args.seed)
            prompts = [fmt.build(examples[i].instruction, examples[i].input) for i in todo]
            seeds = [prompt_seed(args.seed, p) for p in prompts] if args.sample_seeding == "per_prompt" else None
            generate_responses(model, tokenizer, fmt, prompts, args.batch_size, args.max_new_tokens, do_sample=True,
                               temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, on_batch=append,
                               desc=f"alpaca {name}", sampler=args.sampler, postprocess=args.response_postprocess,
                               seeds=seeds)
    finally:
        for f in opened:
            f.close()
    write_json(final, [done[i] for i in range(len(examples))])
    remove_file(partial)
    print(f"wrote {final} ({len(examples)} outputs)")
    return final


def write_reference_outputs(eval_path: str | Path, out_path: str | Path, generator: str = "reference") -> Path:
    """The eval set's reference answers as alpaca_eval `--reference_outputs` (its default reference set is
    downloaded from the hub, which fails offline)."""
    examples = load_examples(eval_path)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, [output_record(ex, ex.reference, generator, Path(eval_path).stem) for ex in examples])
    return out


# ---------------------------------------------------------------------------------------------------------
# Super-NaturalInstructions.


@dataclass
class SuperNITask:
    name: str
    definition: str
    instances: list[dict[str, Any]]  # {"id", "input", "output": [references]}


def load_superni(superni_dir: str | Path, max_instances: int) -> list[SuperNITask]:
    """The test tasks of the default split, first `max_instances` instances each, as the SuperNI paper evaluates."""
    root = Path(superni_dir)
    split = root / "splits" / "default" / "test_tasks.txt"
    if not split.is_file():
        raise DataError(f"--superni_dir {root}: no SuperNI checkout (no splits/default/test_tasks.txt); get it with: "
                        f"git clone {SUPERNI_URL} {root}, or pass --superni_dir {SUPERNI_FIXTURE} (a 3-task fixture)")
    tasks = []
    for name in (line.strip() for line in read_text(split, "SuperNI split").splitlines()):
        if not name:
            continue
        path = root / "tasks" / f"{name}.json"
        if not path.is_file():
            raise DataError(f"{path}: task listed in {split} is missing")
        task = read_json(path, "SuperNI task")
        definition = task.get("Definition")
        if not isinstance(definition, list) or not definition or not isinstance(definition[0], str):
            raise DataError(f"{path}: field 'Definition': expected a non-empty list of strings")
        instances = task.get("Instances")
        if not isinstance(instances, list) or not instances:
            raise DataError(f"{path}: field 'Instances': expected a non-empty list")
        for k, inst in enumerate(instances[:max_instances]):
            ok = isinstance(inst, dict) and isinstance(inst.get("input"), str)
            refs = inst.get("output") if ok else None
            if not ok or not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
                raise DataError(f"{path}: instance {k}: expected 'input' (string) and 'output' (non-empty list)")
        tasks.append(SuperNITask(name, definition[0], instances[:max_instances]))
    if not tasks:
        raise DataError(f"{split}: no tasks listed")
    return tasks


def superni_source(superni_dir: str | Path, tasks: Sequence[SuperNITask]) -> str:
    """What was scored: the bundled fixture (it carries FIXTURE.md) or a checkout of the full repository."""
    if (Path(superni_dir) / "FIXTURE.md").exists():
        return (f"fixture ({len(tasks)} tasks, {superni_dir}; not the benchmark: cd data && git clone {SUPERNI_URL}, "
                "then --superni_dir data/natural-instructions)")
    return f"full repository ({len(tasks)} test tasks, {superni_dir})"


def superni_prompt(task: SuperNITask, instance: dict[str, Any]) -> str:
    """The SuperNI instruction: the task's first definition, two newlines, the instance input."""
    return f"{task.definition}\n\n{instance['input']}"


_ROUGE = None


def superni_rouge_l(prediction: str, references: Sequence[str], first_only: bool = False) -> float:
    """ROUGE-L F1 with Porter stemming (rouge-score). `first_only`: against the instance's first reference, as the
    paper's evaluation.py scored; else the best over all its references, as SuperNI's own compute_metrics does."""
    global _ROUGE
    if _ROUGE is None:
        from rouge_score import rouge_scorer

        _ROUGE = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    refs = references[:1] if first_only else references
    return max(_ROUGE.score(ref, prediction)["rougeL"].fmeasure for ref in refs)


def score_superni(tasks: Sequence[SuperNITask], predictions: Sequence[str], first_only: bool = False) -> dict[str, Any]:
    """Mean ROUGE-L (x 100) over all instances (the paper's figure is this mean / 100), per-task means, and every
    prediction with its score. `predictions` follow the order of the tasks' instances; `first_only` as in
    `superni_rouge_l`."""
    rows, per_task, k = [], {}, 0
    for task in tasks:
        scores = []
        for inst in task.instances:
            score = superni_rouge_l(predictions[k], inst["output"], first_only)
            rows.append({"task": task.name, "id": inst.get("id"), "input": inst["input"], "prediction": predictions[k],
                         "references": inst["output"], "rougeL": 100 * score})
            scores.append(score)
            k += 1
        per_task[task.name] = {"rougeL": 100 * sum(scores) / len(scores), "n": len(scores)}
    if k != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {k} instances")
    return {"rougeL": sum(r["rougeL"] for r in rows) / len(rows), "n_instances": len(rows), "n_tasks": len(tasks),
            "tasks": per_task, "predictions": rows}


def tokenizer_truncation_side(tokenizer) -> str:
    """The side the tokenizer truncates on by its own configuration (right unless its files say otherwise): what
    the paper's SuperNI call used, before load_policy sets left for the other evaluations."""
    return tokenizer.init_kwargs.get("truncation_side") or "right"


@torch.inference_mode()
def superni_paper_answers(model, tokenizer, fmt: PromptFormat, prompts: Sequence[str], batch_size: int,
                          max_new_tokens: int, desc: str = "superni", sampler: str = "loop") -> list[str]:
    """Greedy answers as the paper's evaluation.py produced them.

    Each prompt is tokenized to at most SUPERNI_MAX_PROMPT (512) tokens, truncated on the tokenizer's default side
    (the right for Llama tokenizers: a long prompt loses its end, the response marker included), and left-padded;
    up to `max_new_tokens` are decoded greedily, with no stop string (a row ends at EOS). The answer is the decoded
    prompt-plus-answer minus the decoded prompt (`str.replace`, special tokens skipped in both), neither cut nor
    stripped. Prompts are batched by length (the paper padded all prompts to the longest and kept file order:
    other padding, the same tokens); `sampler` as in `generate_responses`.
    """
    add_special = fmt.add_special_tokens
    eos_ids = sorted(_eos_ids(model, tokenizer))
    device = model.get_input_embeddings().weight.device
    use_generate = sampler == "generate" or bool(extra_processors(model.generation_config))
    side, tokenizer.truncation_side = tokenizer.truncation_side, tokenizer_truncation_side(tokenizer)
    try:
        lengths = [len(ids) for ids in tokenizer(list(prompts), add_special_tokens=add_special, truncation=True,
                                                 max_length=SUPERNI_MAX_PROMPT).input_ids]
        cut = sum(1 for p in tokenizer(list(prompts), add_special_tokens=add_special).input_ids
                  if len(p) > SUPERNI_MAX_PROMPT)
        if cut:
            print(f"note: {cut} SuperNI prompt(s) longer than {SUPERNI_MAX_PROMPT} tokens lose their "
                  f"{tokenizer.truncation_side} end, as in the paper's evaluation", file=sys.stderr)
        answers: list[str] = [""] * len(prompts)
        with tqdm(total=len(prompts), desc=desc, unit="prompt") as bar:
            for idx in sorted_batches(lengths, batch_size, longest_first=True):
                enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                                max_length=SUPERNI_MAX_PROMPT, add_special_tokens=add_special).to(device)
                if use_generate:
                    out = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                                         eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id)
                    new_tokens = out[:, enc["input_ids"].shape[1]:]
                else:
                    new_tokens = decode(model, enc["input_ids"], enc["attention_mask"], max_new_tokens, eos_ids,
                                        tokenizer.pad_token_id, Sampling(do_sample=False))
                for i, prompt_ids, new in zip(idx, enc["input_ids"].tolist(), new_tokens.tolist()):
                    whole = tokenizer.decode(prompt_ids + new, skip_special_tokens=True)
                    answers[i] = whole.replace(tokenizer.decode(prompt_ids, skip_special_tokens=True), "")
                bar.update(len(idx))
    finally:
        tokenizer.truncation_side = side
    return answers


def run_superni(model, tokenizer, fmt: PromptFormat, args: EvalArguments, out_dir: Path, name: str) -> Path:
    tasks = load_superni(args.superni_dir, args.superni_max_instances)
    source = superni_source(args.superni_dir, tasks)
    print(f"SuperNI source: {source}")
    prompts = [fmt.build(superni_prompt(t, inst)) for t in tasks for inst in t.instances]
    paper = args.superni_protocol == "paper"
    answer = (superni_paper_answers if paper
              else functools.partial(generate_responses, do_sample=False, postprocess=args.response_postprocess))
    predictions = answer(model, tokenizer, fmt, prompts, args.batch_size, args.superni_max_new_tokens,
                         desc=f"superni {name}", sampler=args.sampler)
    result = {"generator": name, "superni_dir": str(args.superni_dir), "source": source, "prompt_format": fmt.name,
              "protocol": args.superni_protocol, "response_postprocess": args.response_postprocess,
              "max_instances": args.superni_max_instances, "max_new_tokens": args.superni_max_new_tokens,
              **score_superni(tasks, predictions, first_only=paper)}
    path = out_dir / "superni_eval.json"
    write_json(path, result)
    print(f"SuperNI ROUGE-L {result['rougeL']:.2f} over {result['n_instances']} instances "
          f"of {result['n_tasks']} tasks; wrote {path}")
    return path


# ---------------------------------------------------------------------------------------------------------


def check_args(args: EvalArguments) -> list[tuple[str | None, str, Path]]:
    """Every flag and file, before any model loads; returns (adapter, generator name, output folder) for each
    checkpoint to evaluate (folders not created here)."""
    validation.finite_flags(args)
    validation.range_flags(args)
    for e in args.evaluations:
        validation.one_of("evaluations", e, EVALUATIONS)
    resolve_dtype(args.precision)
    validation.non_negative("device", args.device)
    policy_device(args.device)
    validation.one_of("prompt_format", args.prompt_format, ("auto", *PROMPT_FORMATS))
    validation.one_of("sampler", args.sampler, SAMPLERS)
    validation.one_of("sample_seeding", args.sample_seeding, SAMPLE_SEEDING)
    if args.sample_seeding == "per_prompt" and args.sampler != "loop":
        raise DataError("--sample_seeding per_prompt needs --sampler loop (HF generate draws from one random stream)")
    validation.one_of("superni_protocol", args.superni_protocol, SUPERNI_PROTOCOLS)
    validation.one_of("response_postprocess", args.response_postprocess, RESPONSE_POSTPROCESS)
    for flag in ("batch_size", "max_new_tokens", "superni_max_instances", "superni_max_new_tokens", "temperature"):
        validation.positive(flag, getattr(args, flag))
    if not 0 < args.top_p <= 1:
        raise DataError(f"--top_p must be in (0, 1], got {args.top_p}")
    validation.non_negative("top_k", args.top_k)
    validation.model("base_model_name", args.base_model_name)
    for flag, evaluation in (("max_new_tokens", "alpaca"), ("superni_max_new_tokens", "superni")):
        if evaluation in args.evaluations:  # an answer needs room beside its prompt (of at least one token)
            validation.fits_context("base_model_name", args.base_model_name, {flag: getattr(args, flag)}, prompt_room=1)
    adapters: list[str | None] = list(args.peft_model_name or [None])
    for adapter in adapters:
        if adapter is not None:
            validation.adapter("peft_model_name", adapter)
    if "alpaca" in args.evaluations:
        paper_data.eval_file("eval_path", args.eval_path)
        validation.input_data("eval_path", args.eval_path)
        load_examples(args.eval_path, require_reference=False)
    if "superni" in args.evaluations:
        load_superni(args.superni_dir, args.superni_max_instances)
    names = [checkpoint_name(args.base_model_name, a) for a in adapters]
    if args.output_dir and len(adapters) > 1:
        # One folder for several checkpoints: the file names must tell them apart.
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise DataError(f"--peft_model_name: two adapters named {twice[0]} would write the same files into "
                            f"--output_dir {args.output_dir}; leave --output_dir out (each answers into its folder)")
        if "superni" in args.evaluations:
            raise DataError(f"--output_dir {args.output_dir}: every checkpoint would write the same superni_eval.json "
                            f"there; leave --output_dir out with several --peft_model_name (each writes into its "
                            "folder)")
    jobs = []
    for adapter, name in zip(adapters, names):
        out_dir = Path(args.output_dir or adapter or "eval_outputs")
        flag = "peft_model_name" if adapter and not args.output_dir else "output_dir"
        validation.output_folder(flag, out_dir)
        check_outputs(args, flag, out_dir, name)
        jobs.append((adapter, name, out_dir))
    return jobs


ALPACA_OUTPUT = json_rows_with("instruction", "output", "generator")  # what an alpaca-eval-*.json holds
SUPERNI_OUTPUT = json_object_with("rougeL")


def check_outputs(args: EvalArguments, flag: str, out_dir: Path, name: str) -> None:
    """The files this checkpoint's evaluation writes are none of its inputs, and a file already at their names
    is replaced (with --overwrite) only when it is evaluation.py's own."""
    inputs = {"eval_path": args.eval_path, "base_model_name": args.base_model_name, "superni_dir": args.superni_dir}
    final, partial = alpaca_paths(out_dir, name)
    if "alpaca" in args.evaluations:
        for path in (final, partial):
            refuse_inputs(flag, path, inputs)
        check_output_file(flag, final, ALPACA_OUTPUT, "an outputs file of evaluation.py")
    if "superni" in args.evaluations:
        refuse_inputs(flag, out_dir / "superni_eval.json", inputs)
        check_output_file(flag, out_dir / "superni_eval.json", SUPERNI_OUTPUT, "evaluation.py's SuperNI result")


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    (args,) = validation.parse_flags([EvalArguments], argv, __doc__.splitlines()[0])
    for flag in sorted(given_flags(argv, list(NO_EFFECT_FLAGS))):
        print(f"note: --{flag} has no effect here: {NO_EFFECT_FLAGS[flag]}", file=sys.stderr)
    validation.note_without(given_flags(argv, ALPACA_ONLY), "--evaluations alpaca", "alpaca" in args.evaluations)
    validation.note_without(given_flags(argv, SUPERNI_ONLY), "--evaluations superni", "superni" in args.evaluations)
    with exit_on_data_error():
        jobs = check_args(args)
        for adapter, name, out_dir in jobs:
            evaluate(args, adapter, name, out_dir)


def evaluate(args: EvalArguments, adapter: str | None, name: str, out_dir: Path) -> None:
    """One checkpoint (or the base model), from a fresh load: what a process of its own would do."""
    todo = []  # finished work is skipped before paying for the model load
    if "alpaca" in args.evaluations:
        final, _ = alpaca_paths(out_dir, name)
        if final.exists() and not args.overwrite:
            print(f"kept {final} (complete; --overwrite to regenerate)")
        else:
            todo.append("alpaca")
    if "superni" in args.evaluations:
        if (out_dir / "superni_eval.json").exists() and not args.overwrite:
            print(f"kept {out_dir / 'superni_eval.json'} (--overwrite to regenerate)")
        else:
            todo.append("superni")
    if not todo:
        return
    settings = {**asdict(args), "peft_model_name": adapter}
    print(f"evaluating {name}: {', '.join(todo)}; settings {json.dumps(settings)}")
    model, tokenizer = load_policy(args.base_model_name, adapter, args.trust_remote_code, args.precision, args.device)
    fmt = resolve_prompt_format(args.prompt_format, tokenizer)
    with created_folder(out_dir):
        if "alpaca" in todo:
            run_alpaca(model, tokenizer, fmt, args, out_dir, name)
        if "superni" in todo:
            run_superni(model, tokenizer, fmt, args, out_dir, name)


if __name__ == "__main__":
    main()
