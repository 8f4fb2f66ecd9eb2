"""The library under the root's scripts (reverse reward engineering: Kim & Seo, EMNLP 2024).

Entry scripts at the root import from here; nothing here imports them. One idea per module:

    errors          the one error type (DataError) and how a failure becomes one line: exit code 2, load failures
    data            instruction files: records, qtype, the reward's query and the gold's user text
    files           every file read or written: JSON/JSONL/CSV with one-line faults, atomic writes, the write
                    rule, sha256 fingerprints
    validation      checks of flags and paths before any work
    precision       the compute dtype follows the hardware (bf16 only where native)
    prompts         prompt formats and the response clean-up rule
    features        a researcher's own features (--features_module)
    relevance       e(.), the relevance encoder of QR and RAR
    onnx_encoder    the same encoder under ONNX Runtime (--relevance_backend)
    gold            the gold reward models (Starling-RM-34B, a classifier) and their flags
    slow_tokenizer  Starling's tokenizer through its sentencepiece model, as the paper loaded it
    score_cache     scores cached on disk by a hash of what was scored
    stats           JSON-safe correlations and the bootstrap interval of a Spearman over instructions
    batching        length-sorted batches (every encoder, gold, generation loop) and right padding
    standin         the gold stand-in's preference pairs, rendering and pair accuracy
    cutoff          cut vs finished answers: the one definition of "cut" and the split of gold scores by it
    proxy_settings  the proxy a run trained with, recorded and read back
    checkpoints     which {prefix}_step_N checkpoints are complete
    ppo             TRL 0.7.4's PPO, reproduced: GAE, clipped losses, KL control, the trainer
    run_state       what a PPO checkpoint holds; saving, finding and restoring a run
    openmp          OpenMP's barrier wait, set before torch loads (the training scripts import it first)
    decode          the one decode path of the PPO rollouts and evaluation.py: cache, attention, sampling
    attention       KV-cache keyword and sdpa switch shared by decoding and the gold stand-in
    training        what run_ppo.py and run_grpo.py share: flags, tokenizer and prompt format, prompts
    feature_view    per-feature Spearman against the gold, table and plot
    ladder          the reward-design ladder's designs, seed intervals, hacking flag, report and cost
    best_of_n       best-of-n design comparison: per-row seeded draws, the exact best-of-k expectation, paired
                    bootstrap over prompts, report and figure
    offline_models  the offline default models (SmolLM2 from a packaged GGUF, MiniLM)
    qtype           query-type labels for new prompts: a trained classifier or an LM judge (annotate.py)
    paper_data      the paper's data files, fetched at a pinned commit and checked
"""
