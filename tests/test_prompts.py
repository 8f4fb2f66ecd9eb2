"""The prompts, the reward's query text and the gold's input, string for string as the paper's code built them.

The exact strings are pinned here. Where the paper's code and validation file sit beside the checkout
(`../shared/paper-code`, `../shared/data`), every one of the 2,000 validation records is also compared with what
the paper's own `conversation.py` and `reward_model.py` produce: they are loaded from there at test time as a
reference, never copied into the project.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from helpers import ROOT

from rre.data import gold_query, load_examples, parse_record, reward_query
from rre.gold import starling_text
from rre.prompts import PROMPT_FORMATS, TEMPLATES, get_prompt_format, user_message

PAPER_CODE = ROOT.parent / "shared" / "paper-code"
PAPER_VAL = ROOT.parent / "shared" / "data" / "alpacafarm_val.json"
ALPACA_SYSTEM = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
                 "request.")
LLAMA2_SYSTEM = (
    "<s>[INST] <<SYS>>\nYou are a helpful, respectful and honest assistant. Always answer as helpfully as possible, "
    "while being safe. Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or "
    "illegal content. Please ensure that your responses are socially unbiased and positive in nature.\n\n"
    "If a question does not make any sense, or is not factually coherent, explain why instead of answering something "
    "not correct. If you don't know the answer to a question, please don't share false information.\n<</SYS>>\n\n")

# (template, instruction, input) -> the exact prompt.
EXACT = [
    ("alpaca", "Add.", "2 and 3",
     f"{ALPACA_SYSTEM}\n\n### Instruction:\nAdd.\n\n### Input:\n2 and 3\n\n### Response:"),
    ("alpaca", "Add 2 and 3.", "", f"{ALPACA_SYSTEM}\n\n### Instruction:\nAdd 2 and 3.\n\n### Response:"),
    ("vicuna_v1.1", "Add.", "2 and 3",
     "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, "
     "and polite answers to the user's questions. USER: Add.\n\n### Input:\n2 and 3 ASSISTANT:"),
    ("vicuna_v1.1", "Add 2 and 3.", "",
     "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, "
     "and polite answers to the user's questions. USER: Add 2 and 3. ASSISTANT:"),
    ("llama-2", "Add 2 and 3.", "", f"{LLAMA2_SYSTEM}Add 2 and 3.[/INST]"),
    ("llama-2", "Add.", "2 and 3", f"{LLAMA2_SYSTEM}Add.\n\n### Input:\n2 and 3[/INST]"),
    ("tulu", "Add 2 and 3.", "", "<|user|>\nAdd 2 and 3.\n<|assistant|>\n"),
    ("tulu", "Add.", "2 and 3", "<|user|>\nAdd.\n\n### Input:\n2 and 3\n<|assistant|>\n"),
    ("zephyr", "Add 2 and 3.", "", "<|user|>\nAdd 2 and 3.</s>\n<|assistant|>\n"),
    ("zephyr", "Add.", "2 and 3", "<|user|>\nAdd.\n\n### Input:\n2 and 3</s>\n<|assistant|>\n"),
    ("almost", "Add 2 and 3.", "", "\n\nHuman: Add 2 and 3.\n\nAssistant: "),
    ("almost", "Add.", "2 and 3", "\n\nHuman: Add.\n\n### Input:\n2 and 3\n\nAssistant: "),
]


@pytest.mark.parametrize("name,instruction,input_,expected", EXACT)
def test_exact_prompt_strings(name, instruction, input_, expected):
    assert get_prompt_format(name).build(instruction, input_) == expected


def test_every_paper_template_is_a_prompt_format():
    assert set(TEMPLATES) == {"alpaca", "vicuna_v1.1", "llama-2", "tulu", "zephyr", "almost"}
    assert set(TEMPLATES) | {"chat"} == set(PROMPT_FORMATS)
    assert get_prompt_format("vicuna_v1.1").role_markers == ("USER:", "ASSISTANT:")
    assert get_prompt_format("almost").role_markers == ("\n\nHuman:", "\n\nAssistant:")
    assert get_prompt_format("llama-2").role_markers == ("[INST]", "[/INST]")


def test_instruction_input_records_and_single_field_records_give_one_prompt():
    """A record with `instruction` and `input` is prompted as the paper's single-field record of the same text."""
    single = parse_record({"input": "Translate.\n\n### Input:\nHola", "output": "Hello"}, "r0")
    split = parse_record({"instruction": "Translate.", "input": "Hola", "output": "Hello"}, "r1")
    fmt = get_prompt_format("alpaca")
    assert fmt.build(single.instruction, single.input) == fmt.build(split.instruction, split.input) == (
        f"{ALPACA_SYSTEM}\n\n### Instruction:\nTranslate.\n\n### Input:\nHola\n\n### Response:")
    assert user_message("Translate.", "Hola") == "Translate.\n\n### Input:\nHola"


def test_reward_query_and_gold_input_strings():
    """QR's query: markers dropped, end colons stripped, ' : ' one space, whitespace collapsed; Starling's user text:
    the input marker a space, ends stripped, inner whitespace kept."""
    assert reward_query("Translate to French:\n\n### Input:\nGood  morning : x\n") == "Translate to French: Good morning x"
    assert reward_query("List three colors:") == "List three colors"
    assert gold_query("Translate to French:\n\n### Input:\nGood morning:") == "Translate to French:\n\nGood morning"
    example = parse_record({"instruction": "Translate:", "input": "Hola", "output": "Hello"}, "r")
    assert example.query == "Translate: Hola"
    assert starling_text(example.seed_input, "Hello") == (
        "<|im_start|>user\n\n\nHuman: Translate:\n\nHola\n\nAssistant: <|im_end|>\n<|im_start|>assistant\nHello<|im_end|>")


def test_chat_template_name_chooses_the_template(tmp_path):
    from run_ppo import parse_args

    args, _, _ = parse_args(["--chat_template_name", "vicuna_v1.1", "--relevance_model=minilm"])
    assert args.prompt_format == "vicuna_v1.1"
    args, _, _ = parse_args(["--chat_template_name=alpaca", "--prompt_format=alpaca", "--relevance_model=minilm"])
    assert args.prompt_format == "alpaca"
    for flags, message in [(["--chat_template_name=one_shot"], "--chat_template_name must be one of alpaca, "),
                           (["--chat_template_name=alpaca", "--prompt_format=chat"], "name two prompt formats")]:
        proc = subprocess.run([sys.executable, "run_ppo.py", *flags, "--relevance_model=minilm",
                               f"--output_dir={tmp_path / 'never'}"], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "never").exists()


# ---------------------------------------------------------------------------------------------------------
# Against the paper's own code, where it sits beside the checkout.


def _paper_module(name: str):
    path = PAPER_CODE / f"{name}.py"
    if not path.is_file() or not PAPER_VAL.is_file():
        pytest.skip(f"the paper's code and validation file are not beside this checkout ({path}, {PAPER_VAL}): "
                    "a user's clone has neither")
    spec = importlib.util.spec_from_file_location(f"paper_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _paper_prompt(conversation, template: str, message: str) -> str:
    """The paper's prompt of one message, as its training and evaluation scripts built it."""
    conv = conversation.get_conv_template(template)
    conv.messages = []
    conv.append_message(conv.roles[0], message)
    conv.append_message(conv.roles[-1], None)
    return conv.get_prompt()


def test_prompts_equal_the_papers_for_all_validation_records():
    conversation = _paper_module("conversation")
    records = json.loads(PAPER_VAL.read_text(encoding="utf-8"))
    examples = load_examples(PAPER_VAL)
    assert len(records) == len(examples) == 2000
    for name in TEMPLATES:
        fmt = get_prompt_format(name)
        equal = sum(fmt.build(e.instruction, e.input) == _paper_prompt(conversation, name, r["input"])
                    for e, r in zip(examples, records))
        print(f"{name}: {equal} of {len(records)} prompts equal the paper's")
        assert equal == len(records), name


def test_reward_query_and_gold_input_equal_the_papers_for_all_validation_records():
    conversation, paper_reward = _paper_module("conversation"), _paper_module("reward_model")
    template = conversation.get_conv_template("alpaca")
    records = json.loads(PAPER_VAL.read_text(encoding="utf-8"))
    examples = load_examples(PAPER_VAL)
    proxy = paper_reward.ReversedEngineeredRewardForInference(template)  # relevance off: nothing loads
    prompts = [_paper_prompt(conversation, "alpaca", r["input"]) for r in records]
    paper_queries = proxy.extract_raw_query({"query": prompts, "qtype": ["OPENENDED"] * len(records),
                                             "reference": [""] * len(records), "response": [""] * len(records)})["query"]
    equal = sum(e.query == q for e, q in zip(examples, paper_queries))
    print(f"reward query: {equal} of {len(records)} equal the paper's")
    assert equal == len(records)
    starling = object.__new__(paper_reward.StarlingRMForInference)  # its __init__ loads the 34B model
    starling.template = template
    paper_gold = starling.extract_raw_query({"query": [r["input"] for r in records], "response": [""] * len(records)})
    ours = [f"\n\nHuman: {gold_query(e.seed_input)}\n\nAssistant: " for e in examples]
    equal = sum(a == b for a, b in zip(ours, paper_gold["query"]))
    print(f"gold input: {equal} of {len(records)} equal the paper's")
    assert equal == len(records)


@pytest.mark.parametrize("text", [
    "Paris is the capital.\n\n### Instruction:\nName a river.",
    "  An answer\n\n\n\nunrelated block",
    "Body text\n\n-- signature",
    "Body\n\n____\nfooter then more words and more words",
    "plain answer with no stop string at all",
])
def test_length_and_repetition_read_the_text_the_paper_cut(text):
    """The paper's LI and RP (its reward with do_strip) against this project's on the same response."""
    from reward_model import ReversedEngineeredRewardForInference, RewardConfig

    conversation, paper_reward = _paper_module("conversation"), _paper_module("reward_model")
    paper = paper_reward.ReversedEngineeredRewardForInference(conversation.get_conv_template("alpaca"))
    ours = ReversedEngineeredRewardForInference(RewardConfig(relevance_scaling=False, reward_branching=False),
                                                stop_strings=get_prompt_format("alpaca").stop_strings)
    _, feats = ours(["q"], [text], return_features=True)
    li, rp = paper.get_length_incentive(text)
    assert (feats[0]["LI"], feats[0]["RP"]) == pytest.approx((li, rp))
