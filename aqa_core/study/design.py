"""The mini study, declared once: what it trains, scores and shows (rows x seeds x recipes x sweeps
x opt-in parts), its benchmark version and its time budget.

The pipeline (`aqa_core.study.pipeline`) turns this into cached stages; the analysis (tables,
figures, findings, validity, ablations, budget, the report) reads it beside the results files and
never imports the pipeline (`tests/test_layout.py`). `tests/test_plan.py` checks it against the
analysis plan's machine-checked block (book/plan.md), which was fixed before any result.

>>> [r.key for r in RUNS]
['sft_full', 'sft_lora', 'grpo_p2', 'grpo_p3']
>>> seed_value(42, 2), seed_suffix(2), seed_suffix(0)
(44, '-seed2', '')
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]  # the repository: recipes, book/ and notebooks/ are relative to it
PLAN = ROOT / "book" / "plan.md"
#: The mini benchmark the study runs on (aqa_core.mini.data.VERSION, checked against the plan).
BENCHMARK_VERSION = "3"
#: Training seeds per run (the analysis plan's); seed k > 0 of a run trains with `seed_value`.
SEEDS = 3
#: The analysis plan's bootstrap: its resamples and its random seed.
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


class StudyError(Exception):
    """A study's input that is missing or wrong, said in one line: by `python -m aqa_core`, and in
    a notebook, where IPython shows `_render_traceback_` in place of a traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


def seed_value(recipe_seed: int, index: int) -> int:
    """The training seed of a run's `index`-th seed: the recipe's own seed plus the index (seed 0
    is the recipe as written); `seed_index` is its inverse."""
    return recipe_seed + index


def seed_index(seed: int, recipe_seed: int) -> int:
    """Which of a run's seeds trained with `seed` (its config.yaml's), the first with `recipe_seed`."""
    return seed - recipe_seed


def seed_suffix(index: int) -> str:
    """How a run's extra seed names its folder and stages: RUN-seedN (seed 0: RUN itself)."""
    return f"-seed{index}" if index else ""


@dataclass(frozen=True)
class Row:
    """One row of Table 2: a model scored on test-mini, made by one stage of the study.

    `key` names its glue values (`mini_grpo_p2_avg`); `folder` is where it lies in a results
    folder; `runner` and `recipe` are set for a trained row (None: direct inference of the base
    model); `opt_in` names the opt-in part that trains it (None: every build)."""

    key: str
    label: str
    folder: str
    prompt: int
    stage: str
    page: str  # the book page that records it: book/results/PAGE.ipynb
    runner: str | None = None
    recipe: str | None = None
    opt_in: str | None = None

    @property
    def trained(self) -> bool:
        return self.runner is not None


ROWS = (
    Row("direct_p2", "Direct inference + Prompt <2>", "eval/base-prompt2", 2, "eval-base-p2", "base_prompt2"),
    Row("direct_p1", "Direct inference + Prompt <1>", "eval/base-prompt1", 1, "eval-base-p1", "base_prompt1"),
    Row("sft_full", "Full + Prompt <1>", "sft-full", 1, "sft-full", "sft_full", "sft", "recipes/sft/mini-full.yaml"),
    Row("sft_lora", "LoRA + Prompt <1>", "sft-lora", 1, "sft-lora", "sft_lora", "sft", "recipes/sft/mini-lora.yaml"),
    Row("grpo_p2", "GRPO + Prompt <2>", "grpo-prompt2", 2, "grpo-p2", "grpo_prompt2", "grpo", "recipes/grpo/mini.yaml"),
    Row("grpo_p3", "GRPO + Prompt <3>", "grpo-prompt3", 3, "grpo-p3", "grpo_prompt3", "grpo", "recipes/grpo/mini.yaml",
        opt_in="prompt3"),
)
#: The trained rows, in Table 2's order.
RUNS = tuple(r for r in ROWS if r.trained)
#: The paired comparisons Table 2 reports: (A, B) tests accuracy(A) - accuracy(B).
COMPARISONS = (("grpo_p2", "sft_full"), ("grpo_p2", "sft_lora"), ("grpo_p3", "sft_full"),
               ("grpo_p3", "sft_lora"), ("grpo_p3", "grpo_p2"), ("sft_lora", "sft_full"), ("grpo_p2", "direct_p2"))
#: The full-scale recipes Table 1 shows beside the mini ones.
PAPER_RECIPES = {
    "grpo": ("recipes/grpo/paper.yaml", "recipes/grpo/official-code.yaml"),
    "sft": ("recipes/sft/paper-full.yaml", "recipes/sft/paper-lora.yaml"),
}


def find_row(key: str) -> Row:
    """The row with this key (or stage name): `find_row("grpo_p2") is find_row("grpo-p2")`."""
    found = next((r for r in ROWS if key in (r.key, r.stage)), None)
    if found is None:
        raise KeyError(f"no row {key!r}; rows: {', '.join(r.key for r in ROWS)}")
    return found


@dataclass(frozen=True)
class OptIn:
    """A part of the study a default build leaves out. A build that has not run it quotes the
    reference archive (`aqa_core.study.archive`) for the glue values matching `glue` (fnmatch
    patterns, the mini scale's prefix included; never the paper's values), and says so."""

    name: str
    how: str  # the command that runs it
    glue: tuple[str, ...]
    origin_key: str  # the glue key (after the scale prefix) naming where its numbers come from

    def quotes(self, key: str) -> bool:
        """Whether a glue key is one of this part's (`glue`)."""
        import fnmatch

        return any(fnmatch.fnmatchcase(key, pattern) for pattern in self.glue)


#: GRPO with prompt <3> is the plan's secondary run, opt-in since its Amendment 5 (`study
#: --prompt3`); the ablations are their own plan (`study --plan ablations`), specified after the
#: main results (exploratory).
OPT_IN = {
    "prompt3": OptIn("prompt3", "make book STUDY_ARGS=--prompt3",
                     ("mini_*grpo_p3*", "mini_think*", "fig3_grpo_p3*", "fig5_grpo_p3*", "budget_grpo_p3*"), "grpo_p3"),
    "ablations": OptIn("ablations", "python -m aqa_core study --plan ablations --jobs 2 && make book",
                       ("mini_abl_*", "mini_ablation_*", "table_ablations", "figure_ablations"), "ablation"),
}

# ----------------------------------------------------------------------------- scoring

#: Questions per generate call in the study's evaluations and sweeps (the CLI default is 8).
EVAL_BATCH = 32
#: New tokens per answer in the study's evaluations: the mini recipes train completions of at most
#: 32 tokens, so longer outputs are runaway text; the paper's evaluation allows 256 (fidelity row 21).
EVAL_MAX_NEW_TOKENS = 64
#: Validation items the sweeps score at each checkpoint: the first 200 of the 400 (the analysis
#: plan's validation subset, Amendment 3; the learning-rate search used all 400).
VALIDATION_ITEMS = 200
#: Where a sweep scores the test split (`python -m aqa_core sweep --test-at`): seed 0's sweeps draw
#: the curves (every second checkpoint, the base as step 0, the chosen checkpoint with its audio
#: ablated); the other seeds score the checkpoint chosen on validation and the last (the plan's
#: secondary comparison); the ablations the chosen one alone.
SWEEP_TEST_AT = {"curves": "alternate", "seeds": "selected", "ablations": "chosen"}
#: The base model's evaluations with the audio replaced (the validity checks of book/plan.md):
#: (prompt, --audio value).
VALIDITY_ABLATIONS = ((2, "silence"), (2, "mismatched"))
#: The audio ablations of each seed-0 run at its chosen checkpoint (its sweep's --ablate-selected):
#: Table 2's companion, how much of each model's accuracy comes from listening.
LISTENING_ABLATIONS = ("silence", "mismatched")

# ----------------------------------------------------------------------------- plans

PLANS = ("main", "lr-search", "ablations")
#: The ablations plan's runs live under RESULTS/ABLATION_DIR; the training-set sizes are 1/8, 1/4
#: and 1/2 of `train` (the main runs are the whole).
ABLATION_DIR = "ablations"
TRAIN_FRACTIONS = (8, 4, 2)


def ablation_runs(train_size: int) -> dict[str, tuple[str, list[str]]]:
    """{ablation folder: (the main run's stage, --set overrides)}: the training-set sizes for full
    SFT, LoRA SFT and GRPO <2>; the prompt confound (SFT trained and evaluated with prompt <2>);
    and training without listening (GRPO <2> and full SFT with silent training clips, Omni-R1's
    test). Three seeds each (`SEEDS`), the main study's budget rule."""
    runs: dict[str, tuple[str, list[str]]] = {}
    for k in TRAIN_FRACTIONS:
        for stage in ("sft-full", "sft-lora", "grpo-p2"):
            runs[f"{find_row(stage).folder}-train{train_size // k}"] = (stage, [f"max_train_samples={train_size // k}"])
    for stage in ("sft-full", "sft-lora"):
        runs[f"{find_row(stage).folder}-prompt2"] = (stage, ["prompt=2", "sft_tagged=true"])
    for stage in ("grpo-p2", "sft-full"):
        runs[f"{find_row(stage).folder}-silent"] = (stage, ["train_audio=silence"])
    return runs


@lru_cache(maxsize=1)
def plan_constants() -> dict:
    """The analysis plan's machine-checked constants: book/plan.md's one ```yaml block."""
    blocks = re.findall(r"```yaml\n(.*?)```", PLAN.read_text(encoding="utf-8"), re.S)
    if len(blocks) != 1:
        raise ValueError(f"{PLAN} must hold exactly one ```yaml block of constants, found {len(blocks)}")
    return yaml.safe_load(blocks[0])


def plan_train_size() -> int:
    """The size of `train` the analysis plan fixed."""
    return int(plan_constants()["sizes"]["train"])

# ----------------------------------------------------------------------------- time budget


#: Expected seconds of each kind of stage on the 2-core machine (a cold build of 2026-12-01): the
#: scheduler starts the ready stage with the longest chain to the end first (a stage's last real run
#: replaces its figure), and the ablations page estimates the plan's time from them. First match wins.
EXPECTED_SECONDS = (("data", 10), ("base", 80), ("tower", 50), ("eval-base-*", 11), ("probe", 20), ("sft-full*", 95),
                    ("sft-lora*", 105), ("grpo-p2*", 95), ("grpo-p3*", 115), ("sweep-grpo-p3*", 45), ("sweep-*", 35),
                    ("nb-report", 10), ("nb-*", 3),
                    ("abl-sft-*", 100), ("abl-grpo-*", 95), ("sweep-abl-*", 30))


def expected_seconds(stage: str) -> float:
    """A stage's expected seconds (`EXPECTED_SECONDS`; 1 when no pattern matches)."""
    import fnmatch

    return next((float(s) for pattern, s in EXPECTED_SECONDS if fnmatch.fnmatch(stage, pattern)), 1.0)
