"""How much of each Table 2 model's accuracy comes from listening: every model scored on the test
split with the real audio, with every clip replaced by silence, and with each item given another
item's clip (other sub-categories preferred). The base model's three evaluations are the
validity stages (`RESULTS/eval/base-prompt2{,-silence,-mismatched}/`); a trained run's are its
seed-0 sweep at the checkpoint chosen on validation (`sweep --ablate-selected silence
mismatched`: `RUN/eval/CKPT.test.audio-<choice>.json`). The gain "from listening" is real minus
silence, with the paired bootstrap interval of Table 2's comparisons. Later work reports that
part of MMAU is answerable without the audio (Omni-R1, AudioMCQ; ../book/trust.md): this is the
same measurement at the mini scale, for every model.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..runs import SWEEP_FILE, chosen_on_validation, predictions_name
from .design import LISTENING_ABLATIONS as ABLATIONS
from .design import ROWS, Row
from .display import Table
from .results import ModelResult, score_predictions_file
from .tables import cell, compare


def _scored(path: Path, key: str, method: str, scale: str) -> ModelResult | None:
    if not path.is_file():
        return None
    res = ModelResult(scale, key, method, path)
    res.correct, res.task_of = score_predictions_file(path)
    return res


def not_a_choice(path: Path) -> float:
    """Percent of a predictions file's answers that are none of the question's choices (a model
    that answers what it hears, not what it is asked, falls below chance without the audio)."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    return 100 * sum(str(r.get("model_prediction", "")).strip() not in r["choices"] for r in rows) / max(1, len(rows))


def _files(result_dir: Path, spec: Row) -> dict[str, Path] | None:
    """{real, silence, mismatched: predictions file} of one Table 2 row (seed 0), or None."""
    if not spec.trained:
        if spec.key != "direct_p2":  # the validity stages ablate prompt <2> only
            return None
        base = result_dir / spec.folder
        return {"real": base / "predictions.json",
                **{a: base.with_name(f"{base.name}-{a}") / "predictions.json" for a in ABLATIONS}}
    folder = result_dir / spec.folder
    chosen = chosen_on_validation(folder)
    if not chosen:
        return None
    return {a: folder / SWEEP_FILE.parent / predictions_name(chosen["checkpoint"], audio=a)
            for a in ("real", *ABLATIONS)}


def table_listening(result_dir: str | Path, n_resamples: int = 10_000) -> Table | None:
    """One row per Table 2 model with its three scores; None when no model has an ablation yet."""
    import pandas as pd

    result_dir = Path(result_dir)
    scale = result_dir.name
    rows, values = [], {}
    for spec in ROWS:
        files = _files(result_dir, spec)
        if files is None:
            continue
        scored = {k: _scored(p, f"{spec.key}_{k}", spec.label, scale) for k, p in files.items()}
        if scored["real"] is None or not any(scored[a] for a in ABLATIONS):
            continue
        row = {"model, method (seed 0)": spec.label, "real audio": cell(scored["real"].accuracy())}
        invalid = {}
        for a in ABLATIONS:
            row[a] = cell(scored[a].accuracy()) if scored[a] else "—"
            if scored[a]:
                values[f"{scale}_{spec.key}_{a}"] = scored[a].accuracy()[0]
        values[f"{scale}_{spec.key}_real"] = scored["real"].accuracy()[0]
        for k in ("real", *ABLATIONS):
            if scored[k]:
                invalid[k] = values[f"{scale}_{spec.key}_{k}_not_a_choice"] = not_a_choice(files[k])
        if scored["silence"]:
            c = compare(scored["real"], scored["silence"], n_resamples)
            row["from listening (real − silence)"] = f"{c['diff']:+.1f} [{c['lo']:+.1f}, {c['hi']:+.1f}]"
            values.update({f"{scale}_{spec.key}_listening": c["diff"], f"{scale}_{spec.key}_listening_lo": c["lo"],
                           f"{scale}_{spec.key}_listening_hi": c["hi"]})
        row["none of the choices: real / silence / mismatched"] = " / ".join(
            f"{invalid[k]:.0f}%" if k in invalid else "—" for k in ("real", *ABLATIONS))
        rows.append(row)
    if not rows:
        return None
    return Table(pd.DataFrame(rows), values=values, caption=(
        "How much of the accuracy comes from listening: each model on the test split with the real audio, with every "
        "clip replaced by silence (zeros of the clip's length) and with each question given another question's clip; "
        "95% Wilson intervals, and the paired-bootstrap interval of real minus silence; last, the share of answers "
        "that are none of the question's choices in each condition (a model that names what it hears rather than "
        "picking a choice falls below chance without the audio). Trained models at seed 0, at the checkpoint chosen "
        "on validation."))
