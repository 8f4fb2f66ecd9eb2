"""How well annotate.py's two ways label query types, measured on an annotated instruction file.

- the classifier: k-fold cross-validation (seeded split; the head and its standardization are fitted on the
  training folds only), with two ablations: embedding alone and form features alone;
- the judge: a causal LM on a seeded random subset (a CPU pass over 2,000 prompts takes long), with and
  without contextual calibration;
- agreement between the two on that subset, and the accuracy where they agree.

Prints accuracy, per-class precision and recall, the majority-class baseline with a 95% interval, and the
classifier's most confident mistakes.

    python bench/annotate_accuracy.py --data ../shared/data/alpacafarm_val.json --judge_subset 200
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from rre.data import QTYPES, Example, load_examples  # noqa: E402
from rre.files import write_json  # noqa: E402
from rre.qtype import FEATURES, QTypeJudge, _encoder, _leading_verb, cross_validated_probs, design_matrix, label_report  # noqa: E402

OPEN, CONSTRAINED = QTYPES


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def show(name: str, report: dict) -> None:
    lo, hi = wilson(report["accuracy"], report["n"])
    per_class = "  ".join(f"{q}: P {report[q]['precision']:.3f} R {report[q]['recall']:.3f}" for q in QTYPES)
    print(f"{name:<34} n={report['n']:<5} acc {report['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]  "
          f"majority {report['majority_baseline']:.3f}  {per_class}")


def labels(probs: torch.Tensor) -> list[str]:
    return [CONSTRAINED if p >= 0.5 else OPEN for p in probs.tolist()]


def classifier_cv(examples: list[Example], args) -> tuple[list[str], torch.Tensor, dict]:
    """Cross-validated labels of the full model and of the two ablations."""
    start = time.perf_counter()
    x = design_matrix(examples, _encoder(args.encoder, "cpu"))
    print(f"embedded {len(examples)} instructions in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    y = torch.tensor([e.qtype == CONSTRAINED for e in examples])
    gold = [e.qtype for e in examples]
    width = len(FEATURES)
    reports, probs = {}, {}
    for name, cols in (("classifier (embedding + features)", slice(None)), ("  embedding only", slice(0, -width)),
                       ("  form features only", slice(-width, None))):
        probs[name] = cross_validated_probs(x[:, cols], y, args.folds, args.l2, args.seed)
        reports[name.strip()] = label_report(gold, labels(probs[name]))
        show(name, reports[name.strip()])
    full = probs["classifier (embedding + features)"]
    return labels(full), full, reports


def judge_subset(examples: list[Example], subset: list[int], args) -> dict[str, list[str]]:
    """The judge's labels on the subset, calibrated and not, from one pass of label log-probabilities."""
    from rre.offline_models import smollm2_path

    judge = QTypeJudge(args.judge_model or smollm2_path(), "cpu", args.dtype, batch_size=args.batch_size)
    start = time.perf_counter()
    chunks = [judge._label_logprobs([examples[i] for i in subset[s:s + args.batch_size]])
              for s in range(0, len(subset), args.batch_size)]
    logp = torch.cat(chunks)
    print(f"judged {len(subset)} instructions in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    pick = lambda scores: [OPEN if a > b else CONSTRAINED for a, b in scores.tolist()]  # noqa: E731
    return {"judge (calibrated)": pick(logp - judge.offset), "judge (uncalibrated)": pick(logp)}


def mistakes(examples: list[Example], probs: torch.Tensor, count: int) -> None:
    """The classifier's most confident cross-validated mistakes, and its error rate by leading verb."""
    wrong = [(abs(p - 0.5), i) for i, p in enumerate(probs.tolist()) if (p >= 0.5) != (examples[i].qtype == CONSTRAINED)]
    print(f"\nmost confident mistakes ({len(wrong)} mistakes in all):")
    for _, i in sorted(wrong, reverse=True)[:count]:
        e = examples[i]
        print(f"  gold {e.qtype:<11} p(CONSTRAINED)={probs[i]:.2f}  {e.instruction[:100]!r}"
              + (" [+input]" if e.input else ""))
    verbs: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        verbs.setdefault(_leading_verb(e.instruction), []).append(i)
    bad = {i for _, i in wrong}
    print("error rate by leading verb (30+ instructions):")
    for verb, idx in sorted(verbs.items(), key=lambda kv: -len(kv[1])):
        if len(idx) >= 30:
            con = sum(examples[i].qtype == CONSTRAINED for i in idx) / len(idx)
            print(f"  {verb:<10} n={len(idx):<4} CONSTRAINED share {con:.2f}  errors {sum(i in bad for i in idx) / len(idx):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "alpacafarm_val.json"))
    parser.add_argument("--encoder", default="offline:all-MiniLM-L6-v2")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--l2", type=float, default=0.1)
    parser.add_argument("--judge_model", default=None, help="default: the offline SmolLM2-135M-Instruct")
    parser.add_argument("--judge_subset", type=int, default=200, help="0: no judge")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--mistakes", type=int, default=12)
    parser.add_argument("--save_path", default=None, help="write the figures here (JSON)")
    args = parser.parse_args()
    examples = load_examples(args.data, require_qtype=True, require_reference=False)
    print(f"{args.data}: {len(examples)} instructions, {args.folds}-fold cross-validation, seed {args.seed}")
    cv_labels, probs, reports = classifier_cv(examples, args)
    mistakes(examples, probs, args.mistakes)
    if args.judge_subset:
        subset = sorted(random.Random(args.seed).sample(range(len(examples)), min(args.judge_subset, len(examples))))
        gold = [examples[i].qtype for i in subset]
        print(f"\non a random subset of {len(subset)} (seed {args.seed}):")
        show("classifier (cross-validated)", label_report(gold, [cv_labels[i] for i in subset]))
        for name, pred in judge_subset(examples, subset, args).items():
            reports[f"{name}, subset"] = label_report(gold, pred)
            show(name, reports[f"{name}, subset"])
            same = [k for k, i in enumerate(subset) if pred[k] == cv_labels[i]]
            agree = len(same) / len(subset)
            acc = sum(pred[k] == gold[k] for k in same) / len(same) if same else math.nan
            reports[f"agreement classifier / {name}"] = {"agreement": agree, "accuracy_where_they_agree": acc}
            print(f"  agreement with the classifier {agree:.3f}; accuracy where they agree {acc:.3f} (n={len(same)})")
    if args.save_path:
        write_json(args.save_path, reports)  # a class never predicted has precision NaN: written as null


if __name__ == "__main__":
    main()
