"""Prompt formats and the response clean-up rule shared by the reward, PPO rollouts and evaluation.

Two formats, chosen by `--prompt_format`:
- `alpaca`: the Alpaca/AlpacaFarm template used by the paper's SFT models.
- `chat`: the tokenizer's own chat template (SmolLM2-Instruct and other chat models).
The role markers used to cut a response are derived from the chosen format, so the reward, the rollout
post-processing and evaluation all cut at the same places.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rre.data import DataError

ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
ALPACA_PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_ROLE_MARKERS = ("### Instruction:", "### Response:")
# The paper cuts a response at these too: they mark where a model starts a new, unrelated block.
STOP_STRINGS = ("\n\n\n\n", "\n\n--", "\n\n____")
PROMPT_FORMATS = ("alpaca", "chat")


def clean_response(text: str, stop_strings: tuple[str, ...]) -> str:
    """Strip spaces and newlines, cut at the first stop string (role marker or separator), strip again."""
    text = text.strip("\n ")
    cut = len(text)
    for stop in stop_strings:
        idx = text.find(stop)
        if idx != -1:
            cut = min(cut, idx)
    return text[:cut].strip("\n ")


def _chat_role_markers(tokenizer: Any) -> tuple[str, ...]:
    """Role markers of a chat template, found by rendering a two-turn conversation with sentinels.

    The text between the user's content and the assistant's content (and around them) is pure template:
    its non-empty lines (e.g. `<|im_end|>`, `<|im_start|>assistant`) are the markers a model emits when it
    starts a new turn by itself.
    """
    user, assistant = "\x00USER\x00", "\x00ASSISTANT\x00"
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}], tokenize=False
    )
    before, rest = rendered.split(user, 1)
    between, after = rest.split(assistant, 1)
    pieces = [before.splitlines()[-1] if before.splitlines() else ""] + between.splitlines() + after.splitlines()
    markers = [p.strip() for p in pieces if p.strip()]
    if tokenizer.eos_token and tokenizer.eos_token not in markers:
        markers.append(tokenizer.eos_token)
    return tuple(dict.fromkeys(markers))


@dataclass(frozen=True)
class PromptFormat:
    name: str
    role_markers: tuple[str, ...]
    tokenizer: Any = None

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return self.role_markers + STOP_STRINGS

    def build(self, instruction: str, input: str = "") -> str:
        if self.name == "alpaca":
            if input:
                return ALPACA_PROMPT_WITH_INPUT.format(instruction=instruction, input=input)
            return ALPACA_PROMPT_NO_INPUT.format(instruction=instruction)
        content = f"{instruction}\n\n{input}" if input else instruction
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )

    def clean(self, text: str) -> str:
        return clean_response(text, self.stop_strings)


def get_prompt_format(name: str, tokenizer: Any = None) -> PromptFormat:
    if name == "alpaca":
        return PromptFormat("alpaca", ALPACA_ROLE_MARKERS)
    if name == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("--prompt_format=chat needs a tokenizer with a chat template; use --prompt_format=alpaca")
        return PromptFormat("chat", _chat_role_markers(tokenizer), tokenizer)
    raise ValueError(f"unknown prompt format {name!r}; expected one of {PROMPT_FORMATS}")


def resolve_prompt_format(name: str, tokenizer: Any) -> PromptFormat:
    """`auto` = the tokenizer's chat template when it has one (SmolLM2-Instruct), else the Alpaca template."""
    if name == "auto":
        name = "chat" if tokenizer is not None and getattr(tokenizer, "chat_template", None) else "alpaca"
    if name not in PROMPT_FORMATS:
        raise DataError(f"--prompt_format: unknown value {name!r} (expected auto, chat or alpaca)")
    try:
        return get_prompt_format(name, tokenizer)
    except ValueError as err:
        raise DataError(str(err)) from None
