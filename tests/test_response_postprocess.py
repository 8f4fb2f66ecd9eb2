"""`--response_postprocess paper|clean` through training, evaluation and scoring, with a scripted tiny Llama.

The scripted model (SmolLM2's real tokenizer, one layer whose attention and MLP write nothing) answers every
prompt with the same tokens, "Paris is the capital.\\n\\n\\n\\nMore text" then EOS: its next token depends only
on the current one, so a run is deterministic and its answer holds a stop string ("\\n\\n\\n\\n") mid-way.
`pytest -s` prints, per mode, the rollout tensors, the text each feature and the gold read, and the answers.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from helpers import ROOT

ANSWER = "Paris is the capital.\n\n\n\nMore text"
CUT = "Paris is the capital."


@pytest.fixture(scope="module")
def scripted_dir(tmp_path_factory, smollm2_dir) -> str:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    chain = tok(ANSWER, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert len(set(chain)) == len(chain)  # each token names one state
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.fill_(1.0 if "norm" in name else 0.0)
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        emb[:, 0] = 1.0  # every token outside the answer: state 0, which starts it
        for k, token in enumerate(chain[:-1], 1):
            emb[token] = 0.0
            emb[token, k] = 1.0
        for k, token in enumerate(chain):  # from state k the next token is chain[k]
            head[token, k] = 20.0
    out = tmp_path_factory.mktemp("scripted")
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return str(out)


class RecordingEncoder:
    """e(.) that records every text it is asked to encode (a fixed 2-d vector each)."""

    normalized = True
    name = "recording"

    def __init__(self):
        self.texts: list[str] = []

    def encode(self, texts):
        self.texts += list(texts)
        return torch.tensor([[1.0, float(len(t) % 7)] for t in texts])


def ppo_run(model_dir: str, output_dir: Path, mode: str):
    from run_ppo import parse_args, setup

    args, ppo_config, reward_config = parse_args([
        f"--model_name={model_dir}", f"--output_dir={output_dir}", "--overall_steps=1", "--save_freq=1",
        "--batch_size=4", "--mini_batch_size=2", "--gradient_accumulation_steps=1", "--output_max_length=8",
        "--max_prompt_length=256", "--dev_max_examples=4", "--seed=7", "--mixed_precision=no", "--log_with=none",
        "--relevance_model=minilm", "--relevance_scaling=false", "--reward_branching=false",
        "--prompt_format=alpaca", f"--response_postprocess={mode}"])
    return setup(args, ppo_config, reward_config)


@pytest.mark.parametrize("mode", ["paper", "clean"])
def test_rollouts_and_the_text_each_feature_reads(scripted_dir, tmp_path, mode):
    from reward_model import ReversedEngineeredRewardForInference

    run = ppo_run(scripted_dir, tmp_path / "run", mode)
    tok, t = run.tokenizer, run.trainer
    idx = run.stream.next_indices()
    examples, prompts = [run.train_examples[i] for i in idx], [run.train_prompts[i] for i in idx]
    responses, texts = t.generate(prompts)
    raw8 = tok(ANSWER, add_special_tokens=False)["input_ids"][:8]  # the 8-token limit stops it after "More"
    print(f"\n--- {mode}: rollouts of 8 new tokens at most (eos id {tok.eos_token_id})")
    for r, text in list(zip(responses, texts))[:2]:
        print(f"tensor {r.tolist()}  text {text!r}")
    if mode == "paper":
        assert all(r.tolist() == raw8 for r in responses)  # as generated: uncut, no EOS appended
        assert texts == [tok.decode(raw8)] * 4
        paper_utils = ROOT.parent / "shared" / "paper-code" / "utils.py"
        if paper_utils.is_file():  # the paper's own clean-up, on the same rollouts, returns them unchanged
            spec = importlib.util.spec_from_file_location("paper_utils", paper_utils)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            ids, paper_texts = module.strip_response_tensors([torch.tensor(raw8)] * 4, tok, ["### Instruction:",
                                                                                             "### Response:"])
            assert [i.tolist() for i in ids] == [raw8] * 4 and paper_texts == texts
    else:
        cut_ids = tok(CUT, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert all(r.tolist() == cut_ids for r in responses)  # cut at the stop string, EOS appended
        assert texts == [CUT] * 4
    assert run.config_record["resolved"]["response_postprocess"] == mode
    assert run.config_record["proxy"]["reward"]["response_postprocess"] == mode
    assert run.config_record["resolved"]["rollouts_cut_with_eos"] is (mode == "clean")

    # What each feature reads from those rollouts: LI/RP (and extra features) the cut text, QR per the mode.
    seen: list[str] = []
    encoder = RecordingEncoder()
    reward = ReversedEngineeredRewardForInference(
        replace(run.reward_model.config, relevance_scaling=True, rar_max_dot=1.0), run.reward_model.stop_strings,
        extra_features={"seen": lambda s: seen.append(s.response) or 0.0}, encoder=encoder)
    _, feats = reward([e.query for e in examples], texts, [e.reference for e in examples],
                      [e.qtype for e in examples], return_features=True)
    print(f"LI/RP read {seen[0]!r} (LI {feats[0]['LI']:.2f}); QR's encoder read {encoder.texts[0]!r}")
    assert seen == [CUT] * 4 and feats[0]["LI"] == pytest.approx(0.05)  # Paris, is, the, capital, .
    assert encoder.texts[:4] == ([tok.decode(raw8)] * 4 if mode == "paper" else [CUT] * 4)


@pytest.mark.parametrize("mode", ["paper", "clean"])
def test_evaluation_answers_and_what_the_gold_reads(scripted_dir, tmp_path, mode):
    import evaluation
    from eval_monotonicity import load_checkpoints
    from reward_model import RewardConfig, cut_before_scoring
    from rre.data import load_examples
    from rre.gold import starling_text
    from rre.prompts import get_prompt_format

    eval_path = tmp_path / "eval.json"
    eval_path.write_text(json.dumps([{"instruction": "Name the capital of France.", "output": "Paris",
                                      "qtype": "CONSTRAINED"},
                                     {"instruction": "Translate:", "input": "Bonjour", "output": "Hello",
                                      "qtype": "CONSTRAINED"}]))
    folder = tmp_path / "policy_step_1"
    evaluation.main([f"--base_model_name={scripted_dir}", f"--output_dir={folder}", "--evaluations=alpaca",
                     f"--eval_path={eval_path}", "--max_new_tokens=16", "--prompt_format=alpaca",
                     f"--response_postprocess={mode}", "--precision=float32"])
    (outputs_file,) = folder.glob("alpaca-eval-*.json")
    outputs = json.loads(outputs_file.read_text())
    answers = [o["output"] for o in outputs]
    print(f"\n--- {mode}: evaluation answers {answers!r}")
    # paper: decoded past the stop string to EOS; clean: the row stopped there and the answer is cut.
    assert answers == ([ANSWER] * 2 if mode == "paper" else [CUT] * 2)

    config = RewardConfig(response_postprocess=mode)
    examples = load_examples(eval_path)
    (ck,) = load_checkpoints([(1, folder)], examples, get_prompt_format("alpaca").stop_strings,
                             cut_before_scoring(config))
    gold_input = starling_text(ck.examples[1].seed_input, ck.responses[1])
    print(f"gold reads {gold_input!r}")
    assert ck.responses == ([ANSWER] * 2 if mode == "paper" else [CUT] * 2)
    assert gold_input == ("<|im_start|>user\n\n\nHuman: Translate:\n\nBonjour\n\nAssistant: <|im_end|>\n"
                          f"<|im_start|>assistant\n{ck.responses[1]}<|im_end|>")


def test_superni_answers_follow_the_mode(scripted_dir):
    """Greedy SuperNI answers: the same switch (the paper's evaluation decoded them without stop strings)."""
    import evaluation
    from rre.prompts import get_prompt_format
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(scripted_dir).eval()
    tok = AutoTokenizer.from_pretrained(scripted_dir)
    tok.padding_side = "left"
    fmt = get_prompt_format("alpaca")
    for sampler in ("loop", "generate"):
        got = {mode: evaluation.generate_responses(model, tok, fmt, [fmt.build("Say it.")], 1, 16, do_sample=False,
                                                   sampler=sampler, postprocess=mode)
               for mode in ("paper", "clean")}
        assert got == {"paper": [ANSWER], "clean": [CUT]}, sampler


def test_quickstart_and_ladder_pass_their_mode_to_every_stage(tmp_path):
    """The quickstart and the design ladder keep `clean` (their figures were measured with it) and say so to the
    trainer, the answering and the scoring alike; the quickstart's POSTPROCESS and the ladder's flag switch it."""
    from rre import ladder

    script = (ROOT / "scripts" / "quickstart.sh").read_text()
    assert "POSTPROCESS=${POSTPROCESS:-clean}" in script
    stages = [line for line in script.splitlines() if line.startswith(("  accelerate launch", "python evaluation.py",
                                                                       "python eval_monotonicity.py"))]
    assert len(stages) == 4
    joined = script.replace("\\\n", " ")
    for stage in ("run_ppo.py", "--evaluations alpaca", "eval_monotonicity.py", "--evaluations superni"):
        command = next(line for line in joined.splitlines() if stage in line and not line.startswith("#"))
        assert "--response_postprocess=$POSTPROCESS" in command, stage

    spec = importlib.util.spec_from_file_location("design_ladder", ROOT / "design_ladder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for argv, mode in (([], "clean"), (["--response_postprocess", "paper"], "paper")):
        a = module.parse_args([*argv, "--ladder_dir", str(tmp_path)])
        run = module.Ladder(a, ladder.build_designs(["li"]), [1], "model", ["gold"], ["classifier"],
                            tmp_path / "eval.json", 2)
        design = run.designs[0]
        for command in (run.train_command(design, 1), run.answer_command(1, []), run.score_command(design, 1)):
            assert f"--response_postprocess={mode}" in command
