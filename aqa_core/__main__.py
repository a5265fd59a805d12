"""`python -m aqa_core <command> ...`: one entry point for every stage of the study.

Each command lives in the module that owns it, as a `cli(argv) -> int` function, and is
imported only when called, so `score` starts in a fraction of a second without torch.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "score": ("aqa_core.eval.mmau", "Score an MMAU predictions file as the official evaluation.py does."),
    "mmau-version": ("aqa_core.eval.mmau_versions", "Name the MMAU test-mini version of a question or predictions file."),
    "avqa-convert": ("aqa_core.data", "Convert official AVQA question JSON + wavs into the R1-AQA JSONL form."),
    "mini-data": ("aqa_core.mini.data", "Generate the synthetic mini audio-QA benchmark."),
    "mini-base": ("aqa_core.mini.model", "Build and briefly train the mini Qwen2-Audio base model."),
    "mini-probe": ("aqa_core.mini.probe", "Linear probes on the frozen audio tower, per sub-category (a validity check)."),
    "tower-cache": ("aqa_core.tower_cache", "Encode clips once with a frozen audio tower, for every later stage."),
    "grpo": ("aqa_core.train.grpo", "Train with GRPO (audio in every pass)."),
    "sft": ("aqa_core.train.sft", "Supervised fine-tuning, full or LoRA."),
    "evaluate": ("aqa_core.eval.evaluate", "Batched MMAU-style inference, scored as the official scorer."),
    "sweep": ("aqa_core.eval.sweep", "Evaluate every checkpoint of a run."),
    "study": ("aqa_core.study.plan", "Run the whole mini study, stage by stage, cached."),
    "lr-search": ("aqa_core.study.lr_search", "Summarize the learning-rate search (after study --plan lr-search)."),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: python -m aqa_core <command> [options]\n\ncommands:")
        for name, (_, help_text) in COMMANDS.items():
            print(f"  {name:<13} {help_text}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; valid commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    cli = getattr(module, "cli_" + name.replace("-", "_"), None) or module.cli
    return int(cli(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
