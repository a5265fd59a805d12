"""Does the mini benchmark measure listening? The analysis plan's validity checks (book/plan.md),
read from the files the study wrote after the base stage, never from a trained model:

    RESULTS/eval/base-prompt1/predictions.json             the base model, prompt <1>
    RESULTS/eval/base-prompt2/predictions.json             the base model, prompt <2>
    RESULTS/eval/base-prompt2-silence/predictions.json     the same, every clip replaced by silence
    RESULTS/eval/base-prompt2-mismatched/predictions.json  the same, each item given another item's clip
    RESULTS/validity/probe.json                            linear probes on the frozen tower (mini-probe)

`validity_report(RESULTS)` gives the per-sub-category table (seen or unseen by `train`, items,
chance, each accuracy with its Wilson interval, the probe), the figure, the flags (a sub-category
below chance for the base model, or whose probe does not beat chance) and the glue values.
"""
from __future__ import annotations

import json
from pathlib import Path

from .display import Figure, Table
from .tables import cell

#: (column, folder under RESULTS/eval, glue key of its overall accuracy) of the evaluations read.
EVALS = (("base <1>", "base-prompt1", "validity_real_p1"), ("base <2>", "base-prompt2", "validity_real_p2"),
         ("silence <2>", "base-prompt2-silence", "validity_silence_p2"),
         ("mismatched <2>", "base-prompt2-mismatched", "validity_mismatched_p2"))
PROBE_FILE = Path("validity") / "probe.json"


def subcategory_tallies(predictions: str | Path) -> dict[str, list]:
    """{sub-category: [correct, total, sum of 1/choices, answers that are none of the choices]} of
    a predictions file, correctness by the MMAU rule."""
    from ..eval.mmau import score_file

    path = Path(predictions)
    records = json.loads(path.read_text(encoding="utf-8"))
    out: dict[str, list] = {}
    for o in score_file(path).outcomes:
        rec = records[o.index]
        t = out.setdefault(str(rec.get("sub-category", "?")), [0, 0, 0.0, 0])
        choices = [str(c).strip().lower() for c in rec.get("choices") or []]
        t[0] += int(bool(o.correct))
        t[1] += 1
        t[2] += 1 / max(1, len(choices))
        t[3] += int(str(rec.get("model_prediction", "")).strip().lower() not in choices)
    return out


def validity_report(result_dir: str | Path) -> dict:
    """{"table": Table, "figure": Figure, "flags": [str], "values": {...}} from what exists;
    a missing file leaves its column empty and is named in `values["validity_missing"]`."""
    import pandas as pd

    from ..eval.stats import percent_interval
    from ..mini.tasks import SUBCATS, TRAIN_SUBCATS

    result_dir = Path(result_dir)
    tallies, missing = {}, []
    for label, folder, _ in EVALS:
        path = result_dir / "eval" / folder / "predictions.json"
        if path.is_file():
            tallies[label] = subcategory_tallies(path)
        else:
            missing.append(str(path))
    probe_path = result_dir / PROBE_FILE
    probe = json.loads(probe_path.read_text(encoding="utf-8"))["sub-categories"] if probe_path.is_file() else {}
    if not probe_path.is_file():
        missing.append(str(probe_path))
    seen = {SUBCATS[k].name for k in TRAIN_SUBCATS}
    order = sorted(SUBCATS.values(),
                   key=lambda s: (("sound", "music", "speech").index(s.task), s.name not in seen, s.name))
    rows, flags, plot = [], [], []
    values: dict = {"validity_missing": ", ".join(missing) or "none"}
    for sub in order:
        ref = next((t[sub.name] for t in tallies.values() if sub.name in t), None)
        if ref is None:
            continue
        n, chance = ref[1], 100 * ref[2] / ref[1]
        row = {"sub-category (task)": f"{sub.name} ({sub.task})", "in train": "seen" if sub.name in seen else "unseen",
               "items": n, "chance": f"{chance:.0f}"}
        point = {"name": sub.name, "chance": chance}
        for label, _, _ in EVALS:
            t = tallies.get(label, {}).get(sub.name)
            if t is None:
                row[label] = ""
                continue
            acc, lo, hi = percent_interval(t[0], t[1])
            row[label] = cell((acc, lo, hi))
            point[label] = acc
            if label == "base <2>":
                outside = 100 * t[3] / t[1]
                inside = 100 * t[0] / (t[1] - t[3]) if t[1] > t[3] else float("nan")
                row["<2>: not a choice (%)"] = f"{outside:.0f}"
                row["<2>: right among choices (%)"] = f"{inside:.0f}" if t[1] > t[3] else ""
                if hi < chance:
                    flags.append(f"{sub.name}: the base model scores below chance with prompt <2> ({acc:.1f}% against "
                                 f"{chance:.1f}%, interval [{lo:.1f}, {hi:.1f}]); {outside:.0f}% of its answers are "
                                 f"none of the choices, and {inside:.0f}% of the others are right")
        p = probe.get(sub.name)
        if p:
            row["probe (its chance)"] = f"{p['accuracy']:.0f} ({p['chance']:.0f})"
            point["probe"], point["probe_chance"] = p["accuracy"], p["chance"]
            if not p["above_chance"]:
                base = tallies.get("base <2>", {}).get(sub.name)
                heard = base is not None and percent_interval(base[0], base[1])[1] > 100 * base[2] / base[1]
                flags.append(f"{sub.name}: the linear probe does not beat chance ({p['accuracy']:.1f}% against "
                             f"{p['chance']:.1f}%); " + (
                                 "the base model does, so the answer is in what it hears, but not linearly in the "
                                 "probe's segment means" if heard else
                                 "nor does the base model: the frozen tower's features may not carry the answer"))
        rows.append(row)
        plot.append(point)
    for label, _, key in EVALS:  # overall accuracy of each evaluation (NaN when it is missing)
        k = sum(t[0] for t in tallies.get(label, {}).values())
        n = sum(t[1] for t in tallies.get(label, {}).values())
        values[key] = 100 * k / n if n else float("nan")
    values["validity_flags"] = len(flags)
    values["validity_flag_list"] = "; ".join(flags) if flags else "none"
    table = Table(pd.DataFrame(rows), css_class="aqa-table aqa-wide", caption=(
        "Validity checks on the base model (no trained model): accuracy (%) per test-mini sub-category with its "
        "Wilson 95% interval, with prompts <1> and <2> and the real audio, and with prompt <2> when every clip is "
        "silence or another item's clip; for prompt <2>, the share of answers that are none of the choices and the "
        "accuracy of the others; a linear probe on the frozen audio tower (trained on base clips, tested on "
        "test-mini clips; its chance is the test clips' commonest answer). aqa_core.study.validity."),
        values=values)
    return {"table": table, "figure": _figure(plot), "flags": flags, "values": values}


def _figure(points: list[dict]) -> Figure:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    series = [("base <2>", "#1f77b4"), ("silence <2>", "#bbbbbb"), ("mismatched <2>", "#ff7f0e"), ("probe", "#2ca02c")]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    x = np.arange(len(points))
    w = 0.2
    for i, (label, color) in enumerate(series):
        ys = [p.get(label, np.nan) for p in points]
        ax.bar(x + (i - 1.5) * w, ys, w, label=label, color=color)
    for j, p in enumerate(points):
        ax.plot([j - 2 * w, j + w], [p["chance"]] * 2, color="black", linewidth=1.2)
        if "probe_chance" in p:  # the probe's own chance: the test clips' commonest answer
            ax.plot([j + w, j + 2 * w], [p["probe_chance"]] * 2, color="#145214", linewidth=2, linestyle=(0, (1, 1)))
    ax.plot([], [], color="black", label="chance (the item's choices)")
    ax.plot([], [], color="#145214", linewidth=2, linestyle=(0, (1, 1)), label="probe's chance (commonest answer)")
    ax.set_xticks(x, [p["name"] for p in points], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, ncol=3, loc="lower left", bbox_to_anchor=(0, 1.01), frameon=False)
    fig.tight_layout()
    return Figure(fig, caption="Per test-mini sub-category: the base model with the real audio, with silence and "
                               "with another item's audio (prompt <2>), and the linear probe's accuracy on the "
                               "frozen tower's features; black lines mark the items' chance, dotted green lines the "
                               "probe's chance (the test clips' commonest answer). aqa_core.study.validity.")
