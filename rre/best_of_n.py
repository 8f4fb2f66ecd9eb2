"""Best-of-n comparison of reward designs: n answers per prompt drawn once, each design's proxy picks its best,
the gold scores the pick. Every design and every n sees the same draws, so differences between designs are
paired by prompt and the noise of sampling cancels out of them.

- Draws: a prompt's n answers come from one decode call of n rows, seeded by the prompt's own seed
  (`prompt_seed`), so they do not depend on which other prompts were drawn, in what order, or in which run.
- Gold at n = k: the exact expectation, over all k-subsets of the n draws, of the gold score of the subset's
  proxy pick (`best_of_k_weights`: the standard unbiased best-of-k estimator on sorted ranks). A tie of proxy
  scores goes to the draw drawn first, as `argmax` over the subset in draw order picks it.
- Intervals: percentile bootstrap over prompts, one set of resampled prompt indices shared by every quantity
  (seeded), so a difference's interval is the paired one.
- Resume: the draws are saved in chunks of prompts (`chunk_file`), keyed by a hash of everything that decides
  them; a chunk whose key matches is reused, anything else is drawn again.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy.stats import spearmanr
from tqdm.auto import tqdm

from rre.data import Example
from rre.errors import DataError
from rre.decode import Sampling, decode, sample_categorical
from rre.files import save_figure, write_json
from rre.prompts import PromptFormat
from rre.files import read_json, require_key
from rre.score_cache import stored_scores
from rre.files import content_hash
from rre.stats import bootstrap_spearman, number

SAMPLES_DIR = "samples"
SCORES_DIR = "scores"
RESULT = "best_of_n.json"
FIGURE = "best_of_n.png"
TIMES = "wall_times.json"


# ---------------------------------------------------------------------------------------------------------
# Which prompts, and their seeds.


def select_prompts(n_records: int, n_prompts: int, seed: int) -> list[int]:
    """The first `n_prompts` record indices of a permutation drawn by `random.Random(seed).shuffle` (all records
    when the file holds no more). Kept in the permutation's order, so a smaller `n_prompts` selects a prefix of a
    larger one, and its saved chunks of draws are the larger run's first chunks."""
    order = list(range(n_records))
    random.Random(seed).shuffle(order)
    return order[:n_prompts]


def prompt_seed(seed: int, index: int) -> int:
    """The seed of record `index`'s draws (32 bits): a hash of the run's seed and the record's index in the file."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{index}".encode()).digest()[:4], "little")


# ---------------------------------------------------------------------------------------------------------
# Drawing the answers.


@dataclass(frozen=True)
class DrawSettings:
    """Everything that decides a prompt's draws besides its text and seed (the key of a saved chunk)."""

    policy: str
    n: int
    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float
    prompt_format: str
    response_postprocess: str
    dtype: str

    def sampling(self) -> Sampling:
        return Sampling(do_sample=True, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)


class RowSampler:
    """`decode`'s sampler with one random stream per row: row r's token at each step is drawn from the uniforms of
    its own generator, so a draw depends on its prompt's seed and its row number, not on which other rows share
    the batch or when they end. `observe` (decode's hook, called before each draw) says which rows are left."""

    def __init__(self, sampling: Sampling, seeds: Sequence[int]):
        self.sampling = sampling
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.running: list[int] = list(range(len(seeds)))

    def observe(self, rows: torch.Tensor, t: int, logits: torch.Tensor) -> None:
        self.running = rows.tolist()

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        u = torch.cat([torch.rand(1, generator=self.generators[r], dtype=torch.float64) for r in self.running])
        return sample_categorical(self.sampling.probabilities(logits), u.to(logits.device))


def row_seed(prompt_seed: int, row: int) -> int:
    """The generator seed of draw `row` of a prompt seeded `prompt_seed`."""
    return prompt_seed * 65536 + row


@torch.inference_mode()
def draw_answers(model, tokenizer, fmt: PromptFormat, prompts: Sequence[str], seeds: Sequence[int],
                 settings: DrawSettings, eos_ids: Sequence[int]) -> list[list[dict[str, Any]]]:
    """`settings.n` answers to each prompt, all in one decode batch (each prompt repeated n times, left-padded);
    draw j of a prompt seeded s samples from its own generator seeded `row_seed(s, j)`.

    Each answer: its text (kept as evaluation.py keeps an answer under the same `response_postprocess`), its
    token count up to EOS, and `cut`: decoding stopped at the token cap with neither EOS nor a stop string."""
    n = settings.n
    device = model.get_input_embeddings().weight.device
    enc = tokenizer([p for p in prompts for _ in range(n)], return_tensors="pt", padding=True,
                    add_special_tokens=fmt.add_special_tokens).to(device)
    stops = tuple(fmt.stop_strings) if settings.response_postprocess == "clean" else ()

    def stopped(tokens: list[int]) -> bool:
        return any(s in tokenizer.decode(tokens, skip_special_tokens=False) for s in stops)

    sampler = RowSampler(settings.sampling(), [row_seed(s, j) for s in seeds for j in range(n)])
    new = decode(model, enc["input_ids"], enc["attention_mask"], settings.max_new_tokens, sorted(eos_ids),
                 tokenizer.pad_token_id, sampler, stop=stopped if stops else None, observe=sampler.observe)
    out = []
    for row in new.tolist():
        end = next((k for k, t in enumerate(row) if t in eos_ids), None)
        tokens = row if end is None else row[:end]
        raw = tokenizer.decode(tokens, skip_special_tokens=False)
        by_stop = bool(stops) and any(s in raw for s in stops)
        cut = end is None and not by_stop and len(tokens) >= settings.max_new_tokens
        if settings.response_postprocess == "clean":
            text = fmt.clean(raw)
        else:
            text = fmt.paper_answer(tokenizer.decode(tokens, skip_special_tokens=True))
        out.append({"output": text, "cut": cut, "tokens": len(tokens)})
    return [out[i * n:(i + 1) * n] for i in range(len(prompts))]


def prompt_chunks(n_prompts: int, chunk_size: int) -> list[range]:
    """The prompts of each chunk: consecutive runs of `chunk_size` (the last may be shorter)."""
    return [range(s, min(s + chunk_size, n_prompts)) for s in range(0, n_prompts, chunk_size)]


def chunked_scores(folder: Path, chunks: Sequence[Sequence[int]], key: Callable[[Sequence[int]], Any],
                   compute: Callable[[list[int]], list]) -> list:
    """Scores of items 0..N-1 cached chunk by chunk in `folder` (`chunk-0000.json`, ...), each keyed by a hash of
    exactly what its items are (`key(items)`): a re-run, or a run over more prompts, computes only the chunks it
    does not find, all of them in one `compute(items)` call (one model load)."""
    out: dict[int, Any] = {}
    missing: list[tuple[int, Sequence[int]]] = []
    for c, items in enumerate(chunks):
        stored = stored_scores(folder / f"chunk-{c:04d}.json", key(items))
        if stored is not None and len(stored) == len(items):
            out.update(zip(items, stored))
        else:
            missing.append((c, items))
    if missing:
        todo = [i for _, items in missing for i in items]
        got = dict(zip(todo, compute(todo)))
        folder.mkdir(parents=True, exist_ok=True)
        for c, items in missing:
            write_json(folder / f"chunk-{c:04d}.json",
                       {"key": content_hash(key(items)), "scores": [got[i] for i in items]}, indent=None)
        out.update(got)
    return [out[i] for i in range(len(out))]


def chunk_file(folder: Path, c: int) -> Path:
    return folder / SAMPLES_DIR / f"chunk-{c:04d}.json"


def chunk_key(settings: DrawSettings, indices: Sequence[int], seeds: Sequence[int], prompts: Sequence[str]) -> str:
    return content_hash([vars(settings), list(indices), list(seeds), list(prompts)])


def read_chunk(path: Path, key: str, n_prompts: int, n: int) -> list[list[dict[str, Any]]] | None:
    """A saved chunk's answers when its key matches (the same prompts, seeds and settings), else None. A chunk
    that is not readable JSON of the expected shape is one line naming it."""
    if not path.is_file():
        return None
    stored = read_json(path, "saved draws")
    if require_key(stored, "key", str(path), str) != key:
        return None
    answers = require_key(stored, "answers", str(path), list)
    ok = len(answers) == n_prompts and all(
        isinstance(a, list) and len(a) == n and all(isinstance(x, dict) and isinstance(x.get("output"), str)
                                                    and isinstance(x.get("cut"), bool) for x in a) for a in answers)
    if not ok:
        raise DataError(f"{path}: saved draws of an unexpected shape; delete it to draw them again")
    return answers


def draw_all(folder: Path, indices: Sequence[int], prompts: Sequence[str], seeds: Sequence[int],
             settings: DrawSettings, chunk_size: int, load: Callable[[], tuple[Any, Any, PromptFormat, list[int]]]
             ) -> tuple[list[list[dict[str, Any]]], float, int]:
    """Every prompt's answers: saved chunks whose key matches are reused, the rest drawn (the policy loaded by
    `load` only when something is left to draw) and saved chunk by chunk. Returns the answers, the seconds spent
    drawing in this call and the number of chunks drawn."""
    chunks = prompt_chunks(len(indices), chunk_size)
    answers: list[list[dict[str, Any]] | None] = [None] * len(indices)
    todo = []
    for c, rows in enumerate(chunks):
        key = chunk_key(settings, [indices[i] for i in rows], [seeds[i] for i in rows], [prompts[i] for i in rows])
        saved = read_chunk(chunk_file(folder, c), key, len(rows), settings.n)
        if saved is None:
            todo.append((c, rows, key))
        else:
            for i, a in zip(rows, saved):
                answers[i] = a
    spent = 0.0
    if todo:
        left = sum(len(rows) for _, rows, _ in todo)
        print(f"drawing {settings.n} answers to each of {left} prompt(s) ({len(indices) - left} reused)", flush=True)
        model, tokenizer, fmt, eos_ids = load()
        (folder / SAMPLES_DIR).mkdir(exist_ok=True)
        with tqdm(total=left, desc="draw", unit="prompt") as bar:
            for c, rows, key in todo:
                start = time.monotonic()
                got = draw_answers(model, tokenizer, fmt, [prompts[i] for i in rows], [seeds[i] for i in rows],
                                   settings, eos_ids)
                bar.update(len(rows))
                took = time.monotonic() - start
                spent += took
                write_json(chunk_file(folder, c), {"key": key, "indices": [indices[i] for i in rows],
                                                   "seconds": took, "answers": got}, indent=None)
                for i, a in zip(rows, got):
                    answers[i] = a
    else:
        print(f"draws: all {len(indices)} prompts' answers reused from {folder / SAMPLES_DIR}")
    return answers, spent, len(todo)  # type: ignore[return-value]


def saved_draw_seconds(folder: Path, n_chunks: int) -> float:
    """The drawing time recorded in the saved chunks (across every run that drew them)."""
    total = 0.0
    for c in range(n_chunks):
        path = chunk_file(folder, c)
        if path.is_file():
            seconds = read_json(path, "saved draws").get("seconds")
            total += float(seconds) if isinstance(seconds, (int, float)) else 0.0
    return total


# ---------------------------------------------------------------------------------------------------------
# The best-of-k estimator.


def draw_order_ranks(scores: np.ndarray) -> np.ndarray:
    """Rank 0..n-1 of each draw (n-1: the best), ties going to the draw drawn first (argmax's rule)."""
    n = len(scores)
    order = sorted(range(n), key=lambda i: (scores[i], -i))  # ascending; an earlier draw ranks above a tie
    ranks = np.empty(n, dtype=int)
    ranks[order] = np.arange(n)
    return ranks


def best_of_k_weights(n: int, k: int) -> np.ndarray:
    """P(the draw of rank r, 0-based ascending, is a random k-subset's best) = C(r, k-1) / C(n, k)."""
    if not 1 <= k <= n:
        raise ValueError(f"k must be within 1..{n}, got {k}")
    total = math.comb(n, k)
    return np.array([math.comb(r, k - 1) / total for r in range(n)])


def best_of_k(proxy: np.ndarray, values: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """For one prompt: E[`values` of the proxy's pick in a uniformly random k-subset of the n draws], per k.
    `values` may be [n] or [n, m] (several quantities picked by the same proxy); returns [len(ks)] or
    [len(ks), m]."""
    n = len(proxy)
    ranks = draw_order_ranks(np.asarray(proxy, dtype=float))
    by_rank = np.asarray(values, dtype=float)[np.argsort(ranks)]
    return np.stack([best_of_k_weights(n, k) @ by_rank for k in ks])


# ---------------------------------------------------------------------------------------------------------
# Statistics over prompts.


def bootstrap_indices(n_prompts: int, n_resamples: int, seed: int) -> np.ndarray:
    """[n_resamples, n_prompts] prompt indices drawn with replacement, shared by every interval of a report."""
    return np.random.default_rng(seed).integers(0, n_prompts, size=(n_resamples, n_prompts))


def mean_interval(per_prompt: np.ndarray, resamples: np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """Mean over prompts and its percentile bootstrap interval (resampled prompts `resamples`)."""
    out: dict[str, Any] = {"mean": float(per_prompt.mean()), "ci": [None, None], "level": level}
    if len(resamples):
        means = per_prompt[resamples].mean(axis=1)
        lo, hi = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
        out["ci"] = [float(lo), float(hi)]
    return out


def curves(answers_proxy: np.ndarray, answers_values: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """[prompts, len(ks), m]: each prompt's best-of-k expectation of the m value columns under the proxy."""
    return np.stack([best_of_k(p, v, ks) for p, v in zip(answers_proxy, answers_values)])


def design_report(proxy: np.ndarray, golds: dict[str, np.ndarray], cut: np.ndarray, ks: Sequence[int],
                  resamples: np.ndarray, bootstrap_seed: int) -> dict[str, Any]:
    """One design's numbers: per k the proxy, each gold and the share of cut answers among its picks (means over
    prompts), the gold gain from k=1 to each k with its interval, and the Spearman of the proxy and gold curves
    along k (with its bootstrap interval over prompts). `proxy`, each gold and `cut` are [prompts, n]."""
    names = list(golds)
    values = np.stack([proxy, *(golds[g] for g in names), cut.astype(float)], axis=-1)  # [prompts, n, m]
    c = curves(proxy, values, ks)  # [prompts, len(ks), m]
    out: dict[str, Any] = {"proxy": c[:, :, 0].mean(0).tolist(), "cut_picked": c[:, :, -1].mean(0).tolist(),
                           "golds": {}}
    for j, g in enumerate(names, start=1):
        per_k = c[:, :, j]
        gain = per_k - per_k[:, :1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rho = spearmanr(c[:, :, 0].mean(0), per_k.mean(0)).statistic
        out["golds"][g] = {
            "mean": per_k.mean(0).tolist(),
            "gain": [mean_interval(gain[:, i], resamples) for i in range(len(ks))],
            "spearman_along_n": {"statistic": number(rho),
                                 **bootstrap_spearman(c[:, :, 0].T, per_k.T, len(resamples), bootstrap_seed)},
        }
    out["per_prompt"] = c  # [prompts, len(ks), m]: kept for the paired differences, dropped before writing
    return out


def paired_differences(reports: dict[str, dict[str, Any]], gold_names: Sequence[str], ks: Sequence[int],
                       resamples: np.ndarray, baseline: str) -> dict[str, Any]:
    """Each design minus `baseline`, per gold, at every k: the mean over prompts of the paired difference of the
    best-of-k gold, with its bootstrap interval (the same resampled prompts as every other interval)."""
    out: dict[str, Any] = {}
    base = reports[baseline]["per_prompt"]
    for design, rep in reports.items():
        if design == baseline:
            continue
        out[f"{design} - {baseline}"] = {
            g: [mean_interval(rep["per_prompt"][:, i, j] - base[:, i, j], resamples) for i in range(len(ks))]
            for j, g in enumerate(gold_names, start=1)}
    return out


def cell(s: dict[str, Any], digits: int = 2) -> str:
    lo, hi = s["ci"]
    return f"{s['mean']:+.{digits}f}" + (f" [{lo:+.{digits}f}, {hi:+.{digits}f}]" if lo is not None else "")


def markdown_table(result: dict[str, Any]) -> str:
    """Per gold and design: gold at n=1, the gain from n=1 to the largest n with its interval, the difference
    from the baseline design at the largest n, the share of cut answers picked at n=1 and the largest n, and the
    Spearman of proxy and gold along n."""
    ks, base = result["ks"], result["baseline"]
    top = ks[-1]
    header = ["gold", "design", "gold at n=1", f"gain n=1 -> {top} [95%]", f"minus {base} at n={top} [95%]",
              f"cut picked n=1 -> {top}", "Spearman along n"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in result["golds"]:
        for d, rep in result["designs"].items():
            gd = rep["golds"][g]
            diff = result["differences"].get(f"{d} - {base}", {}).get(g)
            rho = gd["spearman_along_n"]
            rho_s = "n/a" if rho["statistic"] is None else f"{rho['statistic']:+.2f}"
            if rho["statistic"] is not None and rho["ci95"][0] is not None:
                rho_s += f" [{rho['ci95'][0]:+.2f}, {rho['ci95'][1]:+.2f}]"
            lines.append("| " + " | ".join([
                g, d, f"{gd['mean'][0]:+.2f}", cell(gd["gain"][-1]), cell(diff[-1]) if diff else "-",
                f"{rep['cut_picked'][0]:.0%} -> {rep['cut_picked'][-1]:.0%}", rho_s]) + " |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    """One row per gold: the gold gain over n=1 per design with its 95% band, the difference from the baseline
    design with its band, and the share of cut answers among the picks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks, golds, base = result["ks"], list(result["golds"]), result["baseline"]
    fig, axes = plt.subplots(len(golds), 3, figsize=(14, 3.8 * len(golds)), squeeze=False)
    for r, g in enumerate(golds):
        ax_gain, ax_diff, ax_cut = axes[r]
        for d, rep in result["designs"].items():
            gain = rep["golds"][g]["gain"]
            line, = ax_gain.plot(ks, [s["mean"] for s in gain], marker="o", markersize=3, label=d)
            if gain[-1]["ci"][0] is not None:
                ax_gain.fill_between(ks, [s["ci"][0] for s in gain], [s["ci"][1] for s in gain],
                                     color=line.get_color(), alpha=0.12)
            ax_cut.plot(ks, rep["cut_picked"], marker="o", markersize=3, color=line.get_color(), label=d)
            diff = result["differences"].get(f"{d} - {base}", {}).get(g)
            if diff:
                ax_diff.plot(ks, [s["mean"] for s in diff], marker="o", markersize=3, color=line.get_color(),
                             label=f"{d} - {base}")
                if diff[-1]["ci"][0] is not None:
                    ax_diff.fill_between(ks, [s["ci"][0] for s in diff], [s["ci"][1] for s in diff],
                                         color=line.get_color(), alpha=0.12)
        ax_diff.axhline(0, color="grey", linewidth=0.8)
        ax_gain.axhline(0, color="grey", linewidth=0.8)
        for ax in axes[r]:
            ax.set_xscale("log", base=2)
            ax.set_xticks(powers_of_two(ks[-1]))
            ax.set_xticklabels([str(k) for k in powers_of_two(ks[-1])])
            ax.set_xlabel("n (answers the proxy picks from)")
        ax_gain.set_ylabel(f"gold gain over n=1\n(gold: {g})")
        ax_diff.set_ylabel(f"paired gold difference from {base}")
        ax_cut.set_ylabel("share of picks cut at the cap")
        ax_cut.set_ylim(0, 1)
        ax_gain.legend(fontsize=8)
        ax_diff.legend(fontsize=8)
    fig.suptitle(f"best-of-n: {result['n_prompts']} prompts x {result['n']} draws, {result['max_new_tokens']} new "
                 "tokens (95% bootstrap bands over prompts)")
    fig.tight_layout()
    save_figure(fig, path)


def powers_of_two(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself."""
    ks = [1]
    while ks[-1] * 2 <= n:
        ks.append(ks[-1] * 2)
    return ks if ks[-1] == n else ks + [n]


def build_result(examples: Sequence[Example], proxies: dict[str, np.ndarray], golds: dict[str, np.ndarray],
                 cut: np.ndarray, ks: Sequence[int], n_resamples: int, seed: int, baseline: str) -> dict[str, Any]:
    """The report over all designs and golds (JSON-ready)."""
    resamples = bootstrap_indices(len(examples), n_resamples, seed)
    reports = {d: design_report(p, golds, cut, ks, resamples, seed) for d, p in proxies.items()}
    diffs = paired_differences(reports, list(golds), ks, resamples, baseline) if baseline in reports else {}
    for rep in reports.values():
        rep.pop("per_prompt")
    return {"ks": list(ks), "baseline": baseline, "golds": list(golds), "designs": reports, "differences": diffs,
            "cut_share": float(cut.mean()),
            "gold_by_cut": {g: {"cut": number(v[cut].mean()) if cut.any() else None,
                                "finished": number(v[~cut].mean()) if (~cut).any() else None}
                            for g, v in golds.items()},
            "bootstrap": {"n_resamples": n_resamples, "seed": seed,
                                                          "unit": "prompt", "interval": "percentile, 95%"}}
