"""The white-box proxy reward (the paper's `reward_model.py`).

`ReversedEngineeredRewardForInference` (RER): the paper's white-box proxy reward, built from interpretable
   features of a (query, response, reference, qtype) sample:

       LI  = |tokens(response)| / 100                      length incentive (1.0 when off)
       RP  = |distinct trigrams| / |trigrams|              repetition penalty (1.0 under 3 tokens)
       QR  = e(query) . e(response)                        query relevance
       RAR = e(reference) . e(response)                    reference-answer relevance

       score  = LI                                         without relevance
              = LI x QR                                    relevance, no branching (or OPENENDED)
              = RAR / rar_max_dot x max_sequence_length/100   CONSTRAINED, with branching
       reward = score x RP                                 when RP is on

   Tokens are `nltk.wordpunct_tokenize` of the cleaned response (stripped, cut at the prompt format's role
   markers and the stop strings). The response e(.) reads is the raw one under `--response_postprocess paper`
   (the paper's reward) and the cut one under `clean`. e(.) is the relevance encoder (`rre/relevance.py`); a researcher's own
   features plug in through `rre/features.py`. The gold reward models that judge this proxy are in `rre/gold.py`.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Sequence

from nltk.tokenize import wordpunct_tokenize
from tqdm.auto import tqdm

from rre import validation
from rre.data import Example
from rre.errors import DataError
from rre.features import BUILTIN_FEATURES, CombineFn, FeatureFn, Sample, load_features_module, user_number
from rre.onnx_encoder import BACKENDS
from rre.precision import CHOICES as PRECISION_CHOICES
from rre.prompts import ALPACA_ROLE_MARKERS, RESPONSE_POSTPROCESS, STOP_STRINGS, clean_response
from rre.relevance import (
    OFFLINE_ALIAS,
    PAPER_ENCODER,
    RELEVANCE_MODEL_TYPES,
    RelevanceEncoder,
    auto_rar_max_dot,
    normalizes,
)


@dataclass
class RewardConfig:
    """Flags of the white-box reward; names follow the paper's training arguments."""

    length_incentive: bool = field(default=True, metadata={"help": "LI: multiply by #tokens/100"})
    repetition_penalty: bool = field(default=True, metadata={"help": "RP: multiply by distinct/all trigrams"})
    relevance_scaling: bool = field(default=True, metadata={"help": "QR: multiply by e(query).e(response)"})
    reward_branching: bool = field(
        default=True, metadata={"help": "CONSTRAINED instructions score RAR against the reference instead"}
    )
    do_strip: bool = field(default=True, metadata={
        "help": "cut responses at role markers/stop strings before scoring (which features read the cut text: "
                "--response_postprocess); false: every feature reads the text as given"})
    response_postprocess: str = field(default="paper", metadata={
        "help": "paper (as the paper's code did: LI and RP read the cut text, QR and RAR the raw response; rollouts "
                "uncut, no EOS appended; evaluation without stop strings) | clean (every feature, the gold, rollouts "
                "and evaluation answers cut at the first stop string, rollouts end with EOS)"})
    max_sequence_length: int = field(
        default=512, metadata={"help": "top of the RAR interpolation range is max_sequence_length/100"}
    )
    rar_max_dot: str = field(
        default="auto",
        metadata={
            "help": "RAR dot product mapped to the top of the range: a number, or auto (the default): 3.5 for a "
            "raw-dot encoder (the paper's value for Contriever), 1.0 for a normalized (cosine) encoder such as "
            "MiniLM, decided from the encoder's files, printed and recorded in training_config.json"
        },
    )
    relevance_model: str = field(
        default=PAPER_ENCODER,
        metadata={"help": "relevance encoder: hub name or folder (default: the paper's facebook/contriever); "
                  f"`{OFFLINE_ALIAS}` is the shipped all-MiniLM-L6-v2, the offline choice"},
    )
    relevance_model_type: str = field(
        default="auto",
        metadata={"help": "auto | sentence_transformers | contriever (mean pooling, raw dot product)"},
    )
    reward_model_batch_size: int = field(
        default=8, metadata={"help": "relevance encoder batch size (texts per forward; texts are sorted by length "
                             "first). 8 as the paper's command; on a CPU small batches are also the fastest "
                             "(less padding: 1.7x over 64 measured, see README)"})
    reward_device: str = field(default="auto", metadata={"help": "device of the relevance encoder"})
    reward_dtype: str = field(
        default="float32",
        metadata={"help": "relevance encoder precision: float32 (the default on every device, as the paper's encoder "
                  "ran) | bfloat16 (autocast; weights stay float32) | auto: bfloat16 where the device runs it "
                  "natively (a bf16 GPU, a CPU with AVX512-BF16/AMX: about 2x faster there; dot products agree to "
                  "~1e-3), else float32"},
    )

    relevance_backend: str = field(
        default="torch",
        metadata={"help": "relevance encoder runtime: torch (the exact path) | onnx (ONNX Runtime, float32, CPU) | "
                  "onnx-int8 (int8 weights: fastest on CPU; dot products move by a few hundredths)"},
    )

    def __post_init__(self):
        # `--rar_max_dot 1.0` arrives as a string; keep numbers numbers (anything else is checked by check_reward_flags).
        if isinstance(self.rar_max_dot, (int, str)) and self.rar_max_dot != "auto":
            try:
                self.rar_max_dot = float(self.rar_max_dot)
            except ValueError:
                pass

    @property
    def uses_relevance(self) -> bool:
        return self.relevance_scaling

    @property
    def needs_qtype(self) -> bool:
        """Branching on the qtype happens only under relevance scaling: then every instruction needs one."""
        return self.reward_branching and self.relevance_scaling


# ---------------------------------------------------------------------------------------------------------
# The white-box features, each one named as in the paper.


def tokenize(response: str) -> list[str]:
    return wordpunct_tokenize(response)


def length_incentive(tokens: Sequence[str]) -> float:
    """LI: longer answers score higher, in units of 100 tokens."""
    return len(tokens) / 100.0


def repetition_penalty(tokens: Sequence[str]) -> float:
    """RP: share of distinct word trigrams; 1.0 when there is no trigram to repeat."""
    if len(tokens) < 3:
        return 1.0
    trigrams = list(zip(tokens, tokens[1:], tokens[2:]))
    return len(set(trigrams)) / len(trigrams)


def interpolate_rar(rar: float, rar_max_dot: float, max_sequence_length: int) -> float:
    """Map RAR linearly from [0, rar_max_dot] onto [0, max_sequence_length/100], so a CONSTRAINED answer that
    matches its reference earns what a maximal-length OPENENDED answer could. Not clipped, as in the paper:
    a dot product above rar_max_dot earns more than the top of the range."""
    return rar / rar_max_dot * (max_sequence_length / 100.0)


def paper_reward(f: dict[str, float | str | None], config: RewardConfig) -> float:
    """Combine the features exactly as the paper does (see the module docstring)."""
    li = f["LI"] if config.length_incentive else 1.0  # LI and RP are 1.0 when off
    if config.relevance_scaling and config.reward_branching and f["qtype"] == "CONSTRAINED":
        score = interpolate_rar(f["RAR"], config.rar_max_dot, config.max_sequence_length)
    elif config.relevance_scaling:
        score = li * f["QR"]
    else:
        score = li
    return score * (f["RP"] if config.repetition_penalty else 1.0)


class ReversedEngineeredRewardForInference:
    """The white-box reward. Call it on a batch; every encoder call is batched over the whole batch.

    Extend it without editing the class: `extra_features={"name": fn}` adds a feature computed per sample
    (fn gets a `Sample`), and `combine=fn` replaces the combination rule; it gets every feature value,
    including `paper_reward`, the paper's own combination. Example (README): halve the reward of
    responses that apologise.
    """

    def __init__(self, config: RewardConfig | None = None, stop_strings: Sequence[str] | None = None,
                 extra_features: dict[str, FeatureFn] | None = None, combine: CombineFn | None = None,
                 encoder: RelevanceEncoder | None = None):
        self._set_rule(config, stop_strings, extra_features, combine)
        self.encoder = encoder
        if self.encoder is None and self.config.uses_relevance:
            self.encoder = RelevanceEncoder(self.config.relevance_model, self.config.relevance_model_type,
                                            self.config.reward_model_batch_size, self.config.reward_device,
                                            dtype=self.config.reward_dtype, backend=self.config.relevance_backend)
        self.config = resolve_rar_max_dot(self.config, self.encoder)

    @classmethod
    def for_features(cls, config: RewardConfig, extra_features: dict[str, FeatureFn] | None = None,
                     combine: CombineFn | None = None) -> "ReversedEngineeredRewardForInference":
        """The reward of features computed already (`combine_features`): no encoder loads. prescreen.py computes
        the features of a file once, with every flag on, and scores each design from them."""
        self = cls.__new__(cls)
        self._set_rule(config, None, extra_features, combine)
        self.encoder = None
        return self

    def _set_rule(self, config: RewardConfig | None, stop_strings: Sequence[str] | None,
                  extra_features: dict[str, FeatureFn] | None, combine: CombineFn | None) -> None:
        self.config = config or RewardConfig()
        self.stop_strings = tuple(stop_strings) if stop_strings is not None else ALPACA_ROLE_MARKERS + STOP_STRINGS
        self.extra_features = dict(extra_features or {})
        clash = set(self.extra_features) & set(BUILTIN_FEATURES)
        if clash:
            raise ValueError(f"extra feature names clash with built-in ones: {sorted(clash)}")
        self.combine = combine

    def _branch(self, qtype: str | None) -> str:
        c = self.config
        if c.needs_qtype:
            if qtype not in ("OPENENDED", "CONSTRAINED"):
                raise ValueError(f"reward_branching needs qtype OPENENDED or CONSTRAINED, got {qtype!r}")
            return "RAR" if qtype == "CONSTRAINED" else "LIxQR"
        return "LIxQR" if c.relevance_scaling else "LI"

    def __call__(self, queries: Sequence[str], responses: Sequence[str], references: Sequence[str] | None = None,
                 qtypes: Sequence[str | None] | None = None, return_features: bool = False, first_index: int = 0):
        """`first_index`: the position of this batch's first sample in the whole file, for error messages."""
        n = len(responses)
        references = list(references) if references is not None else [""] * n
        qtypes = list(qtypes) if qtypes is not None else [None] * n
        if not (len(queries) == n == len(references) == len(qtypes)):
            raise ValueError("queries, responses, references and qtypes must have the same length")
        cleaned = [clean_response(r, self.stop_strings) if self.config.do_strip else r for r in responses]
        # The relevance encoder reads the raw response under `paper`, as the paper's reward did.
        encoded = cleaned if self.config.response_postprocess == "clean" else list(responses)
        tokens = [tokenize(r) for r in cleaned]
        branches = [self._branch(q) for q in qtypes]
        qr = [math.nan] * n
        rar = [math.nan] * n
        if self.config.relevance_scaling:
            # Only what the formula needs is encoded (QR for LI x QR samples, RAR for CONSTRAINED ones), all
            # in one encoder pass; asking for the features computes both wherever there is a text to compare with.
            # A `combine` rule may read any feature, so it sees them all, in training as in scoring.
            every = return_features or self.combine is not None
            need_qr = [i for i in range(n) if every or branches[i] == "LIxQR"]
            need_rar = [i for i in range(n) if branches[i] == "RAR" or (every and references[i])]
            texts = [encoded[i] for i in range(n)] + [queries[i] for i in need_qr] + [references[i] for i in need_rar]
            emb = self.encoder.encode(texts)
            resp, rest = emb[:n], emb[n:]
            if need_qr:
                dots = (resp[need_qr] * rest[: len(need_qr)]).sum(-1).tolist()
                for i, d in zip(need_qr, dots):
                    qr[i] = d
            if need_rar:
                dots = (resp[need_rar] * rest[len(need_qr):]).sum(-1).tolist()
                for i, d in zip(need_rar, dots):
                    rar[i] = d
        rewards, features = [], []
        for i in range(n):
            f = {"LI": length_incentive(tokens[i]) if self.config.length_incentive else 1.0,
                 "RP": repetition_penalty(tokens[i]) if self.config.repetition_penalty else 1.0, "QR": qr[i],
                 "RAR": rar[i], "qtype": qtypes[i]}
            sample = (Sample(queries[i], cleaned[i], references[i], qtypes[i], tuple(tokens[i]))
                      if self.extra_features else None)
            f = self.combine_features(f, sample, first_index + i)
            rewards.append(f["reward"])
            features.append(f)
        return (rewards, features) if return_features else rewards

    def combine_features(self, base: dict[str, float | str | None], sample: Sample | None,
                         index: int) -> dict[str, Any]:
        """One sample's features and reward under this config, from its LI, RP, QR, RAR (NaN where not computed)
        and qtype: the branch, the paper's combination, the extra features and `combine`. `sample` is needed only
        when there are extra features; `index` names the sample in an error of the researcher's code."""
        # LI and RP are reported as used: 1.0 when that feature is off.
        f: dict[str, Any] = {"LI": base["LI"] if self.config.length_incentive else 1.0,
                             "RP": base["RP"] if self.config.repetition_penalty else 1.0, "QR": base["QR"],
                             "RAR": base["RAR"], "qtype": base["qtype"], "branch": self._branch(base["qtype"])}
        f["paper_reward"] = paper_reward(f, self.config)
        f.update(self.extra_values(sample, index))
        f["reward"] = user_number(self.combine, f, "combine", index) if self.combine else f["paper_reward"]
        return f

    def extra_values(self, sample: Sample | None, index: int) -> dict[str, float]:
        """The extra features of one sample, each called through `user_number` (one-line errors)."""
        if not self.extra_features:
            return {}
        return {name: user_number(fn, sample, f"feature {name!r}", index) for name, fn in self.extra_features.items()}

    def score_examples(self, examples: Sequence[Example], responses: Sequence[str], batch_size: int = 256,
                       return_features: bool = False, progress: bool = True, desc: str = "proxy reward"):
        """Score a whole file in batches, with a progress bar."""
        rewards, features = [], []
        for start in tqdm(range(0, len(examples), batch_size), desc=desc, disable=not progress or len(examples) <= batch_size,
                          unit="batch"):
            exs = examples[start:start + batch_size]
            out = self([e.query for e in exs], responses[start:start + batch_size], [e.reference for e in exs],
                       [e.qtype for e in exs], return_features=return_features, first_index=start)
            rewards += out[0] if return_features else out
            features += out[1] if return_features else []
        return (rewards, features) if return_features else rewards


def cut_before_scoring(config: RewardConfig) -> bool:
    """Whether a scoring script cuts responses before both reward models read them: under `clean` (with
    --do_strip) the proxy's every feature and the gold judge the cut text; under `paper` the gold reads the text as
    written and the proxy cuts it for LI and RP itself, as the paper's check did."""
    return config.do_strip and config.response_postprocess == "clean"


def training_reward(config: RewardConfig, stop_strings: Sequence[str], features_module: str | None,
                    device: object) -> tuple[RewardConfig, ReversedEngineeredRewardForInference]:
    """The proxy a trainer (run_ppo.py, run_grpo.py) scores with: with --reward_device auto, each process scores
    on its own `device`. Returns the config it runs with (recorded: rar_max_dot as a number) and the reward."""
    if config.reward_device == "auto":
        config = RewardConfig(**{**asdict(config), "reward_device": str(device)})
    extra_features, combine = load_features_module(features_module) if features_module else ({}, None)
    reward = ReversedEngineeredRewardForInference(config, stop_strings, extra_features, combine)
    return reward.config, reward  # rar_max_dot auto resolved from the encoder it loaded


def check_reward_flags(cfg: RewardConfig, check_encoder: bool = True) -> None:
    """RewardConfig's flags (shared by every script that scores with the proxy). `check_encoder=False`: the
    encoder is checked later, once a run's recorded proxy has replaced the flag's default (eval_monotonicity.py)."""
    validation.finite_flags(cfg)
    validation.range_flags(cfg)
    validation.positive("max_sequence_length", cfg.max_sequence_length)
    validation.positive("reward_model_batch_size", cfg.reward_model_batch_size)
    validation.one_of("relevance_model_type", cfg.relevance_model_type, RELEVANCE_MODEL_TYPES)
    validation.one_of("reward_dtype", cfg.reward_dtype, PRECISION_CHOICES)
    validation.one_of("relevance_backend", cfg.relevance_backend, BACKENDS)
    validation.one_of("response_postprocess", cfg.response_postprocess, RESPONSE_POSTPROCESS)
    if cfg.uses_relevance and check_encoder:
        check_relevance_model(cfg.relevance_model)
    if cfg.rar_max_dot != "auto":
        if not isinstance(cfg.rar_max_dot, float):
            raise DataError(f"--rar_max_dot must be auto or a number > 0, got {cfg.rar_max_dot!r}")
        validation.positive("rar_max_dot", cfg.rar_max_dot)


def resolve_rar_max_dot(cfg: RewardConfig, encoder: RelevanceEncoder | None = None) -> RewardConfig:
    """`rar_max_dot=auto` made a number from the encoder (3.5 raw dot, 1.0 cosine), printed once; any other config
    is returned as it is. Without relevance the value is unused and stays auto. `encoder` (already loaded)
    decides when given, else the encoder's files do (nothing is loaded)."""
    if cfg.rar_max_dot != "auto" or not cfg.uses_relevance:
        return cfg
    normalized = getattr(encoder, "normalized", None)
    if normalized is None:
        normalized = normalizes(cfg.relevance_model, cfg.relevance_model_type)
    value = auto_rar_max_dot(normalized)
    if os.environ.get("RANK", "0") == "0":
        kind = "normalized (cosine)" if normalized else "raw dot product"
        name = getattr(encoder, "name", cfg.relevance_model)
        print(f"rar_max_dot: auto -> {value} ({name}: {kind} encoder)", file=sys.stderr)
    return replace(cfg, rar_max_dot=value)


def check_relevance_model(name: str) -> None:
    """The encoder can be loaded; offline and not cached, one line naming the offline choice (never a silent swap)."""
    if name == OFFLINE_ALIAS:
        return
    try:
        validation.model("relevance_model", name)
    except DataError as err:
        if "hub cache" not in str(err):
            raise
        raise DataError(f"{err}; the offline choice is --relevance_model {OFFLINE_ALIAS} (the shipped "
                        "all-MiniLM-L6-v2; its rar_max_dot auto is 1.0)") from None
