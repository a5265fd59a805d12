"""No number leaves the book unnoticed: the glue keys its pages quote, against the list they quoted
before the first-screen rewrite (issue 24, at d098b9c). A key that is no longer quoted must be named
here with the reason, so that a number disappears only on purpose."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE = ROOT / "tests" / "data" / "book_glue_keys_d098b9c.txt"

_SEED0 = ("seed 0's accuracy with its Wilson interval: the findings' seed-0 table repeated Table 2's rows (its cells "
          "still show them); the first screen gives each method's mean over seeds with the plan's interval instead")
#: Keys the pages stopped quoting, and why.
REMOVED = {
    **{f"mini_{k}_{s}": _SEED0 for k in ("direct_p2", "sft_full", "sft_lora", "grpo_p2", "grpo_p3")
       for s in ("avg", "lo", "hi")},
    "validity_table": "the validity checks per sub-category: shown once, on the validity page (results/validity, "
                      "where the notebook glues it), no longer repeated on the mini scale page, which links to it",
    "fig3_grpo_p3_reward_sentence": "GRPO <3>'s reward trend in words, on the findings page beside prompt <2>'s: "
                                    "the figures page quotes the same rise as numbers (first and last tenth)",
}


def quoted_keys(texts: list[str]) -> set[str]:
    """The glue keys a set of MyST pages quote: roles (`{glue:text}`doc::key:fmt``) and directives.

    >>> sorted(quoted_keys(["a {glue:text}`results/r.ipynb::x_y:.1f` b", "```{glue:any} t2\\n:doc: r\\n```"]))
    ['t2', 'x_y']
    """
    keys: set[str] = set()
    for text in texts:
        keys |= set(re.findall(r"\{glue:\w+\}`[^`]*?::([\w\-]+)", text))
        keys |= set(re.findall(r"```\{glue:\w+\} ([\w\-]+)", text))
    return keys


def test_no_number_leaves_the_book_unless_named_here():
    before = {line for line in BEFORE.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")}
    now = quoted_keys([p.read_text(encoding="utf-8") for p in (ROOT / "book").glob("*.md")])
    gone = before - now
    assert gone == set(REMOVED), (f"no longer quoted, not named in REMOVED: {sorted(gone - set(REMOVED))}; "
                                  f"named but still quoted: {sorted(set(REMOVED) - gone)}")


def test_the_check_sees_a_number_go():
    page = "{glue:text}`results/report.ipynb::mini_primary_diff:+.1f` and {glue:text}`results/report.ipynb::x:d`"
    assert quoted_keys([page]) - quoted_keys([page.split(" and ")[1]]) == {"mini_primary_diff"}
