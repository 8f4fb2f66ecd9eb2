"""Prompt formats and the response clean-up rule shared by the reward, PPO rollouts and evaluation.

Formats, chosen by `--prompt_format` (or the paper's `--chat_template_name`):
- `alpaca` and the other templates the paper's code picks by name (`vicuna_v1.1`, `llama-2`, `tulu`, `zephyr`,
  and `almost`, its evaluation's fallback), written out here string for string: the record's instruction, with
  its input after "\\n\\n### Input:\\n" (the paper's single-field form), is the one user message, and the prompt
  ends where the model's answer starts (`### Response:` with no newline after it, for alpaca).
- `chat`: the tokenizer's own chat template (SmolLM2-Instruct and other chat models).
The role markers used to cut a response are derived from the chosen format, so the reward, the rollout
post-processing and evaluation all cut at the same places.

`--response_postprocess` says what is done with a response after it is generated:
- `paper`: what the paper's code did. Its rollout clean-up never ran (its `strip_response_tensors` raised
  inside a blanket `except` and returned the rollouts as generated), so rollouts stay uncut and get no EOS
  appended; the reward cuts the text for LI and RP only, and QR, RAR and the gold read the raw text; evaluation
  decodes to EOS or the token limit without stop strings and cuts only at the template's own stop string.
- `clean`: every text is cut at the first stop string: rollouts are cut, re-tokenized and end with EOS, every
  feature and the gold read the cut text, and evaluation stops a row once its text holds a stop string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from rre.data import ALPACA_SYSTEM, SEED_INPUT_SEPARATOR
from rre.errors import DataError

ALPACA_ROLE_MARKERS = ("### Instruction:", "### Response:")
VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the user's questions.")
LLAMA2_SYSTEM = (
    "<s>[INST] <<SYS>>\nYou are a helpful, respectful and honest assistant. Always answer as helpfully as possible, "
    "while being safe. Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or "
    "illegal content. Please ensure that your responses are socially unbiased and positive in nature.\n\n"
    "If a question does not make any sense, or is not factually coherent, explain why instead of answering something "
    "not correct. If you don't know the answer to a question, please don't share false information.\n<</SYS>>\n\n"
)
# The paper cuts a response at these too: they mark where a model starts a new, unrelated block.
STOP_STRINGS = ("\n\n\n\n", "\n\n--", "\n\n____")
RESPONSE_POSTPROCESS = ("paper", "clean")


@dataclass(frozen=True)
class Template:
    """One of the paper's named prompt templates: how one user message becomes a prompt, the markers a response is
    cut at (each role, with a colon where the template writes one), and the template's own answer stop string
    (evaluation cuts there under `--response_postprocess paper`)."""

    name: str
    render: Callable[[str], str]
    role_markers: tuple[str, str]
    answer_stop: str | None = None


TEMPLATES = {t.name: t for t in (
    Template("alpaca", lambda m: f"{ALPACA_SYSTEM}\n\n### Instruction:\n{m}\n\n### Response:", ALPACA_ROLE_MARKERS),
    Template("vicuna_v1.1", lambda m: f"{VICUNA_SYSTEM} USER: {m} ASSISTANT:", ("USER:", "ASSISTANT:")),
    Template("llama-2", lambda m: f"{LLAMA2_SYSTEM}{m}[/INST]", ("[INST]", "[/INST]")),
    Template("tulu", lambda m: f"<|user|>\n{m}\n<|assistant|>\n", ("<|user|>", "<|assistant|>")),
    Template("zephyr", lambda m: f"<|user|>\n{m}</s>\n<|assistant|>\n", ("<|user|>", "<|assistant|>"),
             answer_stop="</s>"),
    Template("almost", lambda m: f"\n\nHuman: {m}\n\nAssistant: ", ("\n\nHuman:", "\n\nAssistant:"),
             answer_stop="\nHuman:"),
)}
PROMPT_FORMATS = ("alpaca", "chat", *(n for n in TEMPLATES if n != "alpaca"))


def user_message(instruction: str, input: str = "") -> str:
    """The one user message of a prompt: the instruction, then its input after "\\n\\n### Input:\\n" (the paper's
    single-field form, in which its data files hold every record)."""
    return f"{instruction}{SEED_INPUT_SEPARATOR}{input}" if input else instruction


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

    @property
    def template(self) -> Template | None:
        return TEMPLATES.get(self.name)

    @property
    def add_special_tokens(self) -> bool:
        """A named template is plain text, tokenized with the tokenizer's special tokens (BOS) as the paper's code
        did; a chat template writes its own."""
        return self.name != "chat"

    def build(self, instruction: str, input: str = "") -> str:
        if self.template is not None:
            return self.template.render(user_message(instruction, input))
        content = f"{instruction}\n\n{input}" if input else instruction
        return self.tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )

    def clean(self, text: str) -> str:
        return clean_response(text, self.stop_strings)

    def paper_answer(self, text: str) -> str:
        """An evaluation answer as the paper's evaluation kept it (`--response_postprocess paper`): cut at the
        template's own stop string when it occurs after the first character, then spaces and newlines stripped."""
        stop = self.template.answer_stop if self.template is not None else None
        if stop and text.find(stop) > 0:
            text = text[: text.find(stop)]
        return text.strip(" \n")


def get_prompt_format(name: str, tokenizer: Any = None) -> PromptFormat:
    if name in TEMPLATES:
        return PromptFormat(name, TEMPLATES[name].role_markers)
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
        raise DataError(f"--prompt_format: unknown value {name!r} (expected auto or one of {', '.join(PROMPT_FORMATS)})")
    try:
        return get_prompt_format(name, tokenizer)
    except ValueError as err:
        raise DataError(str(err)) from None
