"""The report notebook's one call: Tables 1 and 2, Figures 3 and 4 and every glue value the
book's pages quote, from files only (`build_report`). The pieces: `aqa_core.study.tables`,
`aqa_core.study.figures`, `aqa_core.study.findings`, `aqa_core.study.paper`; the full-scale
memory, disk and time estimate comes from the preflight (`aqa_core.train.preflight.book_values`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..train.preflight import book_values
from .ablations import ablation_results, figure_ablations, table_ablations
from .archive import REFERENCE, ArchiveError, glue_outputs, part_ran, plain_value, read_archive
from .budget import runs_table
from .design import BOOTSTRAP_RESAMPLES, OPT_IN, ROOT, ROWS, StudyError
from .display import Figure, Table, glue_safe
from .figures import figure_budget_curves, figure_grpo_convergence, figure_sft_convergence
from .headline import headline
from .listening import table_listening
from .lr_search import lr_search_table
from .results import benchmark_version_clause, load_result_dir, row_folders, stage_seconds
from .subcategories import subcategory_tables
from .tables import table_hyperparameters, table_last_checkpoint, table_results, table_seed_means


@dataclass
class Report:
    """Everything the book's results pages show, from files only."""

    table1: Table
    table1_sft: Table
    table2: Table
    comparisons: Table
    runs: Table | None  # every run and seed of the first results folder: budget and convergence
    lr_search: Table | None  # the kept learning-rate search (recipes/lr_search.json), when there is one
    seed_means: Table | None  # Table 2 across seeds (the first results folder)
    last_checkpoint: Table | None  # the plan's secondary comparison: the last checkpoint in place of the chosen one
    subcategories: Table | None  # per test sub-category, seen or unseen in train (the first results folder)
    seen_unseen: Table | None  # per method: the change from the base on seen and on unseen kinds
    listening: Table | None  # every model with the real audio, silence and another item's clip (seed 0)
    ablations: Table | None  # this build's ablations, or how to run them (None: the archive's, in `archived`)
    figure_ablations: Figure | None  # the same results as a figure
    figure3: Figure | None
    figure4: Figure | None
    figure5: Figure | None  # beyond the paper: accuracy against questions seen and FLOPs
    headline: Table | None  # the first screen: each method's mean over seeds and its change from the base
    figure_headline: Figure | None  # the same, every seed drawn
    values: dict[str, Any]
    figure_paths: dict[str, str]
    archived: dict[str, dict]  # glued outputs of an opt-in part this build has not run, from the archive


def build_report(result_dirs: Sequence[str | Path], grpo_recipes: Sequence[str | Path],
                 sft_recipes: Sequence[str | Path], figures_dir: str | Path = "figures",
                 figure_scale: str | Path | None = None, selection: str = "best_on_validation",
                 n_resamples: int = BOOTSTRAP_RESAMPLES, archive: str | Path | None = REFERENCE) -> Report:
    """Tables 1 and 2 and Figures 3 and 4 in one call (what notebooks/report.ipynb runs). Figures
    are drawn from `figure_scale` (default: the first existing results folder) and saved as PNG
    under `figures_dir`. `.values` merges every table's and figure's glue values; `.archived` holds
    what `archive` glued for the opt-in parts this build has not run (`opt_in_sources`)."""
    existing = [Path(d) for d in result_dirs if Path(d).is_dir()]
    if not any(row_folders(d, r) for d in existing for r in ROWS):
        raise StudyError(f"{', '.join(map(str, result_dirs))}: no results yet; `make book` runs the study (and "
                         "`jupyter-book build book` shows the reference archive's)")
    figure_dir = Path(figure_scale) if figure_scale else (existing[0] if existing else None)
    t1 = table_hyperparameters(list(grpo_recipes))
    t1_sft = table_hyperparameters(list(sft_recipes), differing=True)
    t2 = table_results(result_dirs, selection=selection, n_resamples=n_resamples)
    values = {**t1.values, **t1_sft.values, **t2.values}
    paths = {}
    fig3 = fig4 = fig5 = None
    if figure_dir is not None:
        fig3 = figure_grpo_convergence(figure_dir)
        fig4 = figure_sft_convergence(figure_dir)
        fig5 = figure_budget_curves(figure_dir)
        for name, fig in (("figure3_grpo_convergence", fig3), ("figure4_sft_convergence", fig4),
                          ("figure5_budget_curves", fig5)):
            paths[name] = str(fig.save(Path(figures_dir) / f"{name}.png"))
            values.update(fig.values)
    runs = runs_table(existing[0]) if existing else None
    if runs is not None:
        values.update(runs.values)
    values["figure_scale"] = figure_dir.name if figure_dir else "none"
    if existing:  # what this build's stages took (the project log quotes it): summed, not wall time
        timed = stage_seconds(existing[0])
        values[f"{existing[0].name}_stages_timed"] = len(timed)
        values[f"{existing[0].name}_stage_minutes"] = sum(timed.values()) / 60
    values["n_resamples"] = int(n_resamples)
    values.update(book_values(ROOT))  # the preflight's estimate of the paper recipes (full-scale page)
    comparisons = Table(t2.extra["comparisons"], css_class="aqa-table aqa-compare",
                        caption="Paired comparisons on the same test items: accuracy "
                        "difference A − B with its paired-bootstrap 95% interval, and the exact McNemar test.")
    seed_means = table_seed_means(existing[0], selection, n_resamples) if existing else None
    if seed_means is not None:
        values.update(seed_means.values)
    last = table_last_checkpoint(existing[0], n_resamples) if existing else None
    if last is not None:
        values.update(last.values)
    subcats = subcategory_tables(existing[0], n_resamples=n_resamples) if existing else None
    if subcats is not None:
        values.update({f"{existing[0].name}_{k}": v for k, v in subcats[1].values.items()})
    listening = table_listening(existing[0], n_resamples) if existing else None
    if listening is not None:
        values.update(listening.values)
    ablations = fig_abl = None
    archived: dict[str, dict] = {}
    if existing:
        origin, archived = opt_in_sources(existing[0], archive)
        values.update(origin)
        if "table_ablations" not in archived:  # this build's ablations, or the table that says how to run them
            records = ablation_results(existing[0], n_resamples=n_resamples)  # read once for the table and figure
            ablations = table_ablations(existing[0], n_resamples=n_resamples, records=records)
            fig_abl = figure_ablations(existing[0], n_resamples=n_resamples, records=records)
            values.update(ablations.values)
            paths["figure_ablations"] = str(fig_abl.save(Path(figures_dir) / "figure_ablations.png"))
        # what this build made for a part it did not run (its placeholders) gives way to the archive's
        values = {k: v for k, v in values.items() if k not in archived}
    first = None
    if existing:
        def get(key: str) -> Any:
            return values[key] if key in values else plain_value(archived[key]) if key in archived else None

        by_key = {r.key: r for r in load_result_dir(existing[0], selection)}
        first = headline(existing[0].name, by_key, get, n_resamples)
        values.update(first.values)
        paths["figure_headline"] = str(first.figure.save(Path(figures_dir) / "figure_headline.png"))
    kept = ROOT / "recipes" / "lr_search.json"
    lr = lr_search_table(kept) if kept.is_file() else None
    if lr is not None:
        values.update(lr.values)
    return Report(t1, t1_sft, t2, comparisons, runs, lr, seed_means, last, subcats[0] if subcats else None,
                  subcats[1] if subcats else None, listening, ablations, fig_abl, fig3, fig4, fig5,
                  first.table if first else None, first.figure if first else None,
                  {k: glue_safe(v) for k, v in values.items()}, paths, archived)


def opt_in_sources(result_dir: Path, archive: str | Path | None) -> tuple[dict[str, Any], dict[str, dict]]:
    """For each opt-in part of the design (`design.OPT_IN`): where the pages' numbers about it come
    from (`{scale}_{part}_origin`, a short label, and `{scale}_{part}_source`, a sentence's clause;
    `{scale}_{part}_note`, how the numbers were made), and, when this build has not run it, the
    glued outputs of the archive's report page for it (`OptIn.quotes`), which the report glues as
    they were. A part neither this build nor the archive holds is "not run"."""
    scale = result_dir.name
    try:
        kept = read_archive(archive) if archive is not None else None
    except ArchiveError:
        kept = None
    values: dict[str, Any] = {}
    archived: dict[str, dict] = {}
    report: dict[str, dict] | None = None  # the archive's report page, read once
    for part in OPT_IN.values():
        key = f"{scale}_{part.origin_key}"
        if part_ran(result_dir, part):
            values.update({f"{key}_origin": "this build", f"{key}_source": f"this build's runs ({result_dir})",
                           f"{key}_note": "Its stage times were measured in this build."})
        elif kept is not None and kept.has_part(part):
            report = glue_outputs(kept.page("report")) if report is None else report
            same = benchmark_version_clause(result_dir, kept.provenance.get("benchmark_version"))
            values.update({f"{key}_origin": f"archived, {kept.provenance['date']}",
                           f"{key}_source": f"{kept.label}, not this build ({same}): '{part.how}' runs it here",
                           f"{key}_note": kept.provenance.get("note") or ""})
            # the archive's values for the part, not where they came from in its own build (this says it)
            archived.update({k: o for k, o in report.items() if part.quotes(k) and k not in values})
        else:
            values.update({f"{key}_origin": "not run",
                           f"{key}_source": f"no run: neither this build nor an archive holds it; '{part.how}' runs it",
                           f"{key}_note": ""})
    return values, archived
