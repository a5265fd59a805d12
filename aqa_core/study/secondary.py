"""GRPO with prompt <3>, the analysis plan's secondary run: opt-in since the plan's Amendment 5.

A cold `make book` trains the runs of the primary comparison (full and LoRA SFT, GRPO <2>, three
seeds each); `python -m aqa_core study --prompt3` (`make book STUDY_ARGS=--prompt3`) adds GRPO
<3>'s three seeds and sweeps. A build that has not run it shows the archived run instead
(`PROMPT3_ARCHIVE`, written by `scripts/archive_results.py --prompt3` from a results folder that has it):
every report value that names GRPO <3> or the thinking comparison, each seed's convergence verdict,
the date, the commit of the code that trained it, the benchmark version and its stages' seconds.
The pages say which they show (`{scale}_grpo_p3_origin`, `{scale}_grpo_p3_source`).
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..runs import SWEEP_FILE, read_sweep
from .design import ROOT
from .results import benchmark_version_clause, code_commit, convergence, stage_seconds

PROMPT3_ARCHIVE = ROOT / "book" / "archive" / "grpo-prompt3.json"
ROW = "grpo_p3"
#: How to run it, as the pages say it.
PROMPT3_COMMAND = "make book STUDY_ARGS=--prompt3"
#: Values the book's pages quote about GRPO <3> (without the scale prefix where they have one):
#: present whatever the build ran (NaN or a sentence saying so when neither the build nor an
#: archive has the run), so that the book builds.
PAGE_VALUES = {"grpo_p3_avg": math.nan, "grpo_p3_lo": math.nan, "grpo_p3_hi": math.nan}
PAGE_FIGURE_VALUES = {"fig3_grpo_p3_reward_first_tenth": math.nan, "fig3_grpo_p3_reward_last_tenth": math.nan,
                      "fig3_grpo_p3_first_test": math.nan, "fig3_grpo_p3_last_test": math.nan,
                      "fig3_grpo_p3_reward_sentence": "GRPO + Prompt <3> has no run in this build."}


def _kept(key: str) -> bool:
    """A report value the archive keeps: one that names GRPO <3> or the thinking comparison, not
    the paper's, and not this module's own labels (they say where the values come from)."""
    return (not key.startswith("paper_") and not key.endswith((f"{ROW}_origin", f"{ROW}_source"))
            and (ROW in key or "think" in key))


def prompt3_runs(result_dir: str | Path) -> list[Path]:
    """The GRPO <3> run folders (every seed) of a results folder that have a sweep; a ValueError
    saying how to make them when there is none."""
    result_dir = Path(result_dir)
    runs = sorted(p for p in result_dir.glob("grpo-prompt3*") if (p / SWEEP_FILE).is_file())
    if not runs:
        raise ValueError(f"{result_dir} holds no GRPO <3> run with a sweep: run `python -m aqa_core study "
                         f"--out {result_dir} --prompt3` first")
    return runs


def archive_prompt3(result_dir: str | Path, values: Mapping[str, Any], note: str = "") -> dict:
    """What the book keeps of GRPO <3>'s runs: the report `values` (`build_report`'s on
    `result_dir`) that name it, with the scale prefix taken off; each seed's convergence verdict;
    the benchmark's version and sizes, the commit of the code that trained the runs, their stages'
    seconds (the folder's timings.json) and the date."""
    result_dir = Path(result_dir)
    scale = result_dir.name
    runs = prompt3_runs(result_dir)
    manifest = json.loads((result_dir / "data" / "manifest.json").read_text(encoding="utf-8"))
    seconds = stage_seconds(result_dir, ("grpo-p3", "sweep-grpo-p3"))
    prefix = f"{scale}_"
    return {"date": time.strftime("%Y-%m-%d"), "scale": scale, "commit": code_commit(result_dir), "note": note,
            "benchmark_version": manifest.get("version"), "sizes": manifest.get("sizes"),
            "stage_seconds": seconds,
            "convergence": {p.name: convergence(read_sweep(p)) for p in runs},
            "values": {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sorted(values.items())
                       if _kept(k)}}


def read_archive(path: str | Path = PROMPT3_ARCHIVE) -> dict | None:
    path = Path(path)
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def prompt3_provenance(result_dir: str | Path, archive: Mapping[str, Any]) -> str:
    """Where the shown GRPO <3> numbers come from, as a sentence's clause."""
    same = benchmark_version_clause(result_dir, archive.get("benchmark_version"))
    minutes = sum(archive.get("stage_seconds", {}).values()) / 60
    return (f"the archived run of {archive['date']} (code {str(archive['commit'])[:7]}, {same}; "
            f"{'/'.join(PROMPT3_ARCHIVE.parts[-3:])}), not this build: {PROMPT3_COMMAND} trains it again "
            f"({minutes:.0f} minutes of stage time in that run)")


def prompt3_values(result_dir: str | Path, values: Mapping[str, Any],
                   archive_path: str | Path = PROMPT3_ARCHIVE) -> dict:
    """The glue values the pages quote about GRPO <3> that `values` (this build's report) lacks:
    the archive's when this build has no GRPO <3> run, else placeholders, and always
    `{scale}_grpo_p3_origin` ("this build", "archived run" or "not run") and `{scale}_grpo_p3_source`
    (a sentence's clause naming where the numbers come from)."""
    result_dir = Path(result_dir)
    scale = result_dir.name
    out: dict[str, Any] = {}
    if f"{scale}_{ROW}_avg" in values:
        out[f"{scale}_{ROW}_origin"] = "this build"
        out[f"{scale}_{ROW}_source"] = f"this build's runs ({result_dir}/grpo-prompt3*)"
        return out
    archive = read_archive(archive_path)
    if archive is not None and archive.get("scale") == scale:
        for key, value in archive["values"].items():
            if not _kept(key):
                continue
            full = key if key.startswith(("fig3_", "fig5_", "budget_")) else f"{scale}_{key}"
            if isinstance(value, str) and key.endswith("sentence"):
                value = f"{value} (From the archived run of {archive['date']}.)"
            out[full] = value
        out[f"{scale}_{ROW}_origin"] = f"archived run of {archive['date']}"
        out[f"{scale}_{ROW}_source"] = prompt3_provenance(result_dir, archive)
    else:
        out[f"{scale}_{ROW}_origin"] = "not run"
        out[f"{scale}_{ROW}_source"] = (f"no run: neither this build nor an archive holds GRPO <3>; {PROMPT3_COMMAND} "
                                        "trains it")
    for key, value in PAGE_VALUES.items():
        out.setdefault(f"{scale}_{key}", value)
    for key, value in PAGE_FIGURE_VALUES.items():
        out.setdefault(key, value)
    return {k: v for k, v in out.items() if k not in values or k.endswith("think_sentence")}


def prompt3_summary(result_dir: str | Path, archive: Mapping[str, Any] | None) -> str:
    """The GRPO <3> page of a build without it, in Markdown: where the numbers come from, then the
    archived run's mean over seeds, its comparisons (seed 0) and each seed's convergence verdict."""
    if archive is None:
        return (f"No archive: neither this build nor `{'/'.join(PROMPT3_ARCHIVE.parts[-3:])}` holds GRPO <3>; "
                f"`{PROMPT3_COMMAND}` trains it.")
    v = archive["values"]
    lines = [f"From {prompt3_provenance(result_dir, archive)}. "
             f"How it was made: {archive.get('note') or 'not recorded'}.",
             ""]
    if "grpo_p3_seed_mean" in v:
        lines.append(f"- Across the seeds: {v['grpo_p3_seed_mean']:.1f}% [{v['grpo_p3_seed_lo']:.1f}, "
                     f"{v['grpo_p3_seed_hi']:.1f}] (the mean of {v['grpo_p3_seeds']} seeds, the plan's interval).")
    if "think_sentence" in v:
        lines.append(f"- Thinking against answering directly (seed 0): {v['think_sentence']}")
    if "fig3_grpo_p3_reward_sentence" in v:
        lines.append(f"- {v['fig3_grpo_p3_reward_sentence']}")
    lines += [f"- Against {other} (seed 0): {v[f'{ROW}_vs_{key}_diff']:+.1f} points "
              f"[{v[f'{ROW}_vs_{key}_lo']:+.1f}, {v[f'{ROW}_vs_{key}_hi']:+.1f}], "
              f"McNemar p = {v[f'{ROW}_vs_{key}_p_mcnemar']:.3f}."
              for key, other in (("sft_full", "full SFT"), ("sft_lora", "LoRA SFT")) if f"{ROW}_vs_{key}_diff" in v]
    lines += [f"- {run}: {c['reason']}." for run, c in archive.get("convergence", {}).items() if c.get("reason")]
    return "\n".join(lines)


def prompt3_table(archive: Mapping[str, Any] | None):
    """The archived run, seed by seed (the GRPO <3> page of a build without it): checkpoint
    chosen on validation, test accuracy with its interval and by task, and the convergence verdict
    (one row saying so when there is no archive)."""
    import pandas as pd

    from .display import Table

    if archive is None:
        return Table(pd.DataFrame([{"seed": "-", "test average": "no archived run"}]), caption="GRPO + Prompt <3>")
    v = archive["values"]
    rows = []
    for seed, (suffix, run) in enumerate((("", "grpo-prompt3"), ("_seed1", "grpo-prompt3-seed1"),
                                          ("_seed2", "grpo-prompt3-seed2"))):
        key = f"{ROW}{suffix}"
        if f"{key}_avg" not in v:
            continue
        conv = archive.get("convergence", {}).get(run, {})
        rows.append({"seed": seed, "step chosen on validation": v.get(f"{key}_step"),
                     "test average": f"{v[f'{key}_avg']:.1f} [{v[f'{key}_lo']:.1f}, {v[f'{key}_hi']:.1f}]",
                     **{task: round(float(v[f"{key}_{task}"]), 1) for task in ("sound", "music", "speech")
                        if f"{key}_{task}" in v},
                     "converged": {True: "yes", False: "no"}.get(conv.get("converged"), "n/a")})
    return Table(pd.DataFrame(rows), caption=f"GRPO + Prompt <3>, the archived run of {archive['date']} "
                                             f"(code {str(archive['commit'])[:7]}), each seed at its checkpoint "
                                             "chosen on validation.")
