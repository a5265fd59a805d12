"""The book builds from a small set of result files (not the full study) and its HTML holds what
it must: both tables with numbers, both figures as images, every glue key resolved, no warning.

The fixtures are written in the formats the pipeline writes them: MMAU prediction files
(aqa_core.eval.evaluate), run folders with `config.yaml`, `metrics.jsonl` and `eval/sweep.json`
(aqa_core.runs, aqa_core.eval.sweep), the mini data `manifest.json` (aqa_core.mini.data).
"""
from __future__ import annotations

import json
import math
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("sound", "music", "speech")
N_PER_TASK = 30
# (folder, prompt, accuracy per task) of each fixture model; runs get checkpoints at these steps
MODELS = {
    "eval/base-prompt2": (2, (0.50, 0.45, 0.40)),
    "eval/base-prompt1": (1, (0.45, 0.40, 0.40)),
    "sft-full": (1, (0.60, 0.45, 0.45)),
    "sft-lora": (1, (0.60, 0.55, 0.50)),
    "grpo-prompt2": (2, (0.75, 0.65, 0.55)),
    "grpo-prompt3": (3, (0.70, 0.60, 0.55)),
}
STEPS = (20, 40, 60)
SUBCATEGORY = {"sound": "Sound Source", "music": "Instrument Identification", "speech": "Spoken Digit"}
# the validity checks (aqa_core.study.validity): the base model with the audio replaced, near chance
ABLATIONS = {"eval/base-prompt2-silence": (2, (0.30, 0.25, 0.25)),
             "eval/base-prompt2-mismatched": (2, (0.30, 0.30, 0.20))}


def _questions() -> list[dict]:
    out = []
    for _t, task in enumerate(TASKS):
        for i in range(N_PER_TASK):
            choices = [f"{task} answer {k}" for k in range(4)]
            out.append({"id": f"{task}-{i:03d}", "audio_id": f"./test-mini-audios/{task}-{i:03d}.wav",
                        "question": f"Which {task} is it?", "choices": choices, "answer": choices[i % 4],
                        "dataset": "mini", "task": task, "split": "test", "category": "Reasoning",
                        "sub-category": SUBCATEGORY[task], "difficulty": ("easy", "medium", "hard")[i % 3]})
    return out


def _predictions(questions: list[dict], accuracy: tuple[float, ...], seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for q in questions:
        p = accuracy[TASKS.index(q["task"])]
        right = rng.random() < p
        pred = q["answer"] if right else next(c for c in q["choices"] if c != q["answer"])
        rows.append({**q, "model_prediction": pred, "model_output": pred, "raw_output": f"<answer>{pred}</answer>"})
    return rows


def _score(rows: list[dict]) -> dict:
    from aqa_core.eval.mmau import score_predictions

    return score_predictions(rows).to_dict()


def write_fixture_results(root: Path) -> Path:
    """A results folder (`root/mini`) in the pipeline's formats: data manifest, base model stub,
    direct-inference predictions, four run folders with metrics and sweeps."""
    res = root / "mini"
    questions = _questions()
    data = res / "data"
    data.mkdir(parents=True)
    (data / "test-mini.json").write_text(json.dumps(questions, indent=1))
    counts = {task: {f"{task} sub": N_PER_TASK} for task in TASKS}
    (data / "manifest.json").write_text(json.dumps({
        "generator": "aqa_core.mini.data", "version": "1", "seed": 0,
        "sizes": {"train": 90, "validation": 30, "test": len(questions), "base": 60},
        "counts": {"train": {"sound sub": 30, "music sub": 30}, "validation": {"sound sub": 30},
                   "test": {f"{t} sub": N_PER_TASK for t in TASKS}, "base": {"sound sub": 60}},
        "chance_test_mini": 0.25, "files": {}}))
    del counts
    base = res / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "qwen2_audio"}))
    (base / "build_info.json").write_text(json.dumps({
        "parameters": {"total": 3_000_000, "audio_tower": 2_000_000}, "tokenizer_size": 1024,
        "audio_tokens_per_clip": 75, "spec": {"num_hidden_layers": 4, "hidden_size": 256, "audio_seconds": 3},
        "hyperparameters": {"steps": 90}, "train_seconds": 30.0}))
    for seed, (folder, (_prompt, acc)) in enumerate(ABLATIONS.items(), start=50):
        (res / folder).mkdir(parents=True)
        (res / folder / "predictions.json").write_text(json.dumps(_predictions(questions, acc, seed)))
    (res / "validity").mkdir()
    (res / "validity" / "probe.json").write_text(json.dumps({"sub-categories": {
        name: {"key": "x", "task": task, "n_train": 60, "n_test": N_PER_TASK, "answers": 4, "accuracy": 80.0,
               "chance": 30.0, "ci95": [62.7, 90.5], "above_chance": True} for task, name in SUBCATEGORY.items()}}))
    for seed, (folder, (prompt, acc)) in enumerate(MODELS.items()):
        d = res / folder
        d.mkdir(parents=True, exist_ok=True)
        if folder.startswith("eval/"):
            rows = _predictions(questions, acc, seed)
            (d / "predictions.json").write_text(json.dumps(rows))
            (d / "predictions.json.score.json").write_text(json.dumps({"report": _score(rows), "seconds": 2.0}))
            continue
        is_grpo = folder.startswith("grpo")
        (d / "config.yaml").write_text(yaml.safe_dump({"prompt": prompt, "max_steps": STEPS[-1], "seed": 42,
                                                        "learning_rate": 1e-3, "use_peft": folder == "sft-lora",
                                                        "per_device_train_batch_size": 16,
                                                        "gradient_accumulation_steps": 1,
                                                        **({"num_generations": 4, "num_processes": 1}
                                                           if is_grpo else {})}))
        metrics = []
        for step in range(1, STEPS[-1] + 1):
            x = step / STEPS[-1]
            if is_grpo:
                metrics.append({"step": step, "loss": 0.01 * math.sin(step),
                                "reward": 0.6 + 0.8 * x + 0.1 * math.sin(3 * step),
                                "rewards/accuracy_reward/mean": 0.3 + 0.3 * x, "kl": 0.001 * step,
                                "learning_rate": 1e-3})
            elif step % 5 == 0:
                metrics.append({"step": step, "loss": 2.0 * math.exp(-3 * x) + 0.05, "learning_rate": 1e-3})
        metrics.append({"step": STEPS[-1], "train_runtime": 12.0, "summary": True})
        (d / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
        rows = []
        for k, step in enumerate(STEPS):
            (d / f"checkpoint-{step}").mkdir()
            scale = 0.85 + 0.075 * k  # accuracy grows over the checkpoints
            preds = _predictions(questions, tuple(a * scale for a in acc), 100 * seed + k)
            (d / "eval").mkdir(exist_ok=True)
            (d / "eval" / f"checkpoint-{step}.test.json").write_text(json.dumps(preds))
            rep = _score(preds)
            rows.append({"checkpoint": f"checkpoint-{step}", "step": step, "test": rep["total"]["accuracy"],
                         **{f"test_{t}": rep["task"][t]["accuracy"] for t in TASKS},
                         "test_ci95": rep["total"]["ci95"], "test_n": rep["total"]["total"],
                         "validation": 50.0 + 10 * k - 15 * (k == 2), "validation_n": 30})
        pick = lambda key, rows=rows: max(rows, key=lambda r: (r[key], -r["step"]))  # noqa: E731
        sel = {name: {k: pick(key)[k] for k in ("checkpoint", "step", "test", "validation")}
               for name, key in (("best_on_test", "test"), ("best_on_validation", "validation"))}
        (d / "eval" / "sweep.json").write_text(json.dumps({"run": str(d), "prompt": prompt, "rows": rows,
                                                            "selection": sel}))
        chosen = sel["best_on_validation"]["checkpoint"]  # sweep --ablate-selected: nearer chance without the audio
        for a, (factor, s) in {"silence": (0.45, 7), "mismatched": (0.4, 8)}.items():
            preds = _predictions(questions, tuple(x * factor for x in acc), 1000 * seed + s)
            (d / "eval" / f"{chosen}.test.audio-{a}.json").write_text(json.dumps(preds))
    return res


def copy_run(src: Path, dst: Path, seed: int = 0) -> Path:
    """A copy of a fixture run folder as the run's seed `seed` (its config.yaml's seed is what
    makes a RUN-seedN folder that seed: aqa_core.study.results.run_seeds)."""
    shutil.copytree(src, dst)
    config = yaml.safe_load((dst / "config.yaml").read_text())
    (dst / "config.yaml").write_text(yaml.safe_dump({**config, "seed": config["seed"] + seed}))
    return dst


def test_a_runs_seeds_come_from_its_config_not_its_folder_name(tmp_path):
    from aqa_core.study.design import StudyError
    from aqa_core.study.results import run_seeds

    res = write_fixture_results(tmp_path)
    first = res / "grpo-prompt2"
    copy_run(first, res / "grpo-prompt2-seed7", seed=1)
    assert run_seeds(first) == [(0, first), (1, res / "grpo-prompt2-seed7")]
    copy_run(first, res / "grpo-prompt2-seed1", seed=1)
    with pytest.raises(StudyError, match="both trained with seed 43"):
        run_seeds(first)


def write_fixture_recipes(root: Path) -> dict[str, list[Path]]:
    """Paper and mini recipes (GRPO and SFT) with the fields Table 1 reads."""
    g, s = root / "recipes" / "grpo", root / "recipes" / "sft"
    g.mkdir(parents=True)
    s.mkdir(parents=True)
    (g / "paper.yaml").write_text("per_device_train_batch_size: 8\nnum_generations: 8\ngradient_accumulation_steps: 2\n"
                                  "max_steps: 500\nlearning_rate: 1.0e-6\ntemperature: 1.0\n"
                                  "max_completion_length: 512\nbeta: 0.04\n")
    (g / "official-code.yaml").write_text("_base: paper.yaml\nmax_steps: 1000\nmax_completion_length: 256\n"
                                          "save_steps: 100\nmath_verify: true\n")
    (g / "mini.yaml").write_text("_base: paper.yaml\nper_device_train_batch_size: 4\nnum_generations: 4\n"
                                 "max_steps: 60\nlearning_rate: 2.0e-4\nmax_completion_length: 16\n")
    (s / "paper-full.yaml").write_text("learning_rate: 5.0e-6\nper_device_train_batch_size: 4\nnum_train_epochs: 4\n")
    (s / "mini-full.yaml").write_text("_base: paper-full.yaml\nlearning_rate: 1.0e-3\nmax_steps: 60\n")
    return {"grpo": [g / "paper.yaml", g / "official-code.yaml", g / "mini.yaml"],
            "sft": [s / "paper-full.yaml", s / "mini-full.yaml"]}


# ------------------------------------------------------------------------------------ fast tests


def test_table_results_reads_fixture_rows_and_pairs_them(tmp_path):
    from aqa_core.study.tables import table_results

    res = write_fixture_results(tmp_path)
    table = table_results([res, tmp_path / "full"], n_resamples=500)  # runs/full absent: skipped
    mini = table.frame[table.frame["source"] == "this project, mini"]
    assert list(mini["model, method"]) == ["Direct inference + Prompt <2>", "Direct inference + Prompt <1>",
                                    "Full + Prompt <1>", "LoRA + Prompt <1>", "GRPO + Prompt <2>", "GRPO + Prompt <3>"]
    assert re.fullmatch(r"\d+\.\d \[\d+\.\d, \d+\.\d\]", mini["average"].iloc[0])
    v = table.values
    assert 0 <= v["mini_grpo_p2_lo"] <= v["mini_grpo_p2_avg"] <= v["mini_grpo_p2_hi"] <= 100
    assert v["mini_grpo_p2_step"] == 40  # validation-selected checkpoint of the fixture sweep
    assert v["paper_grpo_p2_average"] == 64.5 and v["paper_sft_lora_average"] == 56.4
    assert {"mini_grpo_p2_vs_sft_full_diff", "mini_grpo_p2_vs_sft_lora_p_mcnemar"} <= set(v)
    assert len(table.extra["comparisons"]) == 7
    assert all(isinstance(x, (int, float, str)) and type(x).__module__ == "builtins" for x in v.values())
    assert "mini_verdict" in v and "interval" in v["mini_verdict"]


def test_the_last_checkpoint_table_is_the_plans_secondary_comparison(tmp_path):
    from aqa_core.study.results import score_predictions_file
    from aqa_core.study.tables import table_last_checkpoint

    res = write_fixture_results(tmp_path)
    sweep_file = res / "grpo-prompt2" / "eval" / "sweep.json"
    sweep = json.loads(sweep_file.read_text())
    first = sweep["rows"][0]
    sweep["selection"]["best_on_validation"] = {k: first[k] for k in ("checkpoint", "step", "test", "validation")}
    sweep_file.write_text(json.dumps(sweep))  # chosen on validation: the first checkpoint, not the last
    t = table_last_checkpoint(res, n_resamples=300)
    v = t.values

    def acc(run: str, ckpt: str) -> float:
        correct = score_predictions_file(res / run / "eval" / f"{ckpt}.test.json")[0]
        return 100 * sum(correct.values()) / len(correct)

    last = sweep["rows"][-1]["checkpoint"]
    assert v["mini_last_grpo_p2_change"] == pytest.approx(
        acc("grpo-prompt2", last) - acc("grpo-prompt2", first["checkpoint"]))
    assert v["mini_last_grpo_p2_change_lo"] <= v["mini_last_grpo_p2_change"] <= v["mini_last_grpo_p2_change_hi"]
    chosen = json.loads((res / "sft-full" / "eval" / "sweep.json").read_text())["selection"]["best_on_validation"]
    assert chosen["checkpoint"] != last  # the fixture's runs choose a middle checkpoint
    assert v["mini_last_sft_full_change"] == pytest.approx(
        acc("sft-full", last) - acc("sft-full", chosen["checkpoint"]))
    assert v["mini_last_sentence"].startswith("At the last checkpoints, GRPO + Prompt <2> against ")
    assert list(t.frame["model, method"])[:2] == ["Full + Prompt <1>", "LoRA + Prompt <1>"]


def test_paper_odd_cells_are_the_known_ones():
    from aqa_core.study.paper import paper_values

    odd = paper_values()["paper_odd_cells"]
    assert "49.19" in odd and "50.98" in odd and "52.58" in odd and "64.50" not in odd


def test_table_hyperparameters_reads_every_value_from_the_files(tmp_path):
    from aqa_core.study.tables import table_hyperparameters

    rec = write_fixture_recipes(tmp_path)
    t = table_hyperparameters(rec["grpo"]).frame.set_index("setting")
    assert t.loc["Training Steps", "paper.yaml"] == "500" and t.loc["Training Steps", "mini.yaml"] == "60"
    assert t.loc["Batch Size per Device", "paper.yaml"] == "1"  # 8 completions / 8 generations
    assert t.loc["Batch Size per Device", "mini.yaml"] == "1"
    assert t.loc["Temperature", "mini.yaml"] == "1"  # inherited through _base: still from a file
    assert t.loc["Training Steps", "paper (Table 1)"] == "500"
    # a field no file sets is the runner's default, marked
    assert t.loc["top_k", "paper.yaml"].endswith("†") if "top_k" in t.index else True


def test_figures_have_their_panels_and_values(tmp_path):
    from aqa_core.study.figures import figure_grpo_convergence, figure_sft_convergence

    res = write_fixture_results(tmp_path)
    f3, f4 = figure_grpo_convergence(res), figure_sft_convergence(res)
    assert len(f3.fig.axes) == 3 and len(f4.fig.axes) == 3  # curve, validation, test
    assert f3.values["fig3_grpo_p2_reward_rise"] > 0.5
    assert f4.values["fig4_sft_full_loss_last_tenth"] < f4.values["fig4_sft_full_loss_first_tenth"]
    assert len(f3.fig.axes[1].lines) == 2  # validation: one curve per run
    assert "fig4_sft_full_last_validation" in f4.values
    assert len(f3.fig.axes[2].lines) >= 3  # two accuracy curves (+ stars) and the baseline
    png = f3.save(tmp_path / "f3.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert f3.fig.axes[1].get_ylim() == (0, 100)  # validation on a 0-100 axis, not zoomed onto its noise
    assert all(ax.get_legend() is None for ax in f3.fig.axes) and f3.fig.legends  # one legend, outside the data
    # every seed drawn: an extra seed adds a faint validation curve and its tested checkpoints
    copy_run(res / "grpo-prompt2", res / "grpo-prompt2-seed1", seed=1)
    f3s = figure_grpo_convergence(res)
    assert len(f3s.fig.axes[1].lines) == 3 and len(f3s.fig.axes[2].lines) > len(f3.fig.axes[2].lines)
    assert f3s.values == f3.values  # the glue values stay seed 0's
    labels = [ln.get_label() for ln in f3s.fig.axes[0].lines]
    assert "GRPO + Prompt <2>, mean of 2 seeds (thin: each seed)" in labels


def test_the_first_screen_has_the_verdict_a_table_a_figure_and_the_caveats(tmp_path):
    from aqa_core.study.findings import plan_verdict
    from aqa_core.study.headline import amendment_values, headline
    from aqa_core.study.results import load_result_dir

    res = write_fixture_results(tmp_path / "runs")
    for run in ("sft-full", "sft-lora", "grpo-prompt2"):
        for i in (1, 2):
            copy_run(res / run, res / f"{run}-seed{i}", seed=i)
    for sweep in res.glob("*/eval/sweep.json"):  # step 0: the base model on validation, as the study's sweeps have
        kept = json.loads(sweep.read_text())
        sweep.write_text(json.dumps({**kept, "rows": [{"checkpoint": "base", "step": 0, "validation": 40.0},
                                                      *kept["rows"]]}))
    by_key = {r.key: r for r in load_result_dir(res)}
    verdict = plan_verdict(by_key, n_resamples=200)
    assert verdict["headline"].startswith("Not decided. GRPO with prompt <2> scored ")
    assert f"{verdict['primary_diff']:+.1f}".replace("-", "−") in verdict["headline"]
    values = {"mini_primary_diff": verdict["primary_diff"], "mini_chance": 25.0,
              **{f"mini_{k}_seed_{s}": 50.0 for k in ("direct_p2", "sft_full", "grpo_p2")
                 for s in ("mean", "lo", "hi")},
              "mini_grpo_p2_avg": 51.0, "mini_grpo_p2_seed1_avg": 52.0, "mini_grpo_p2_seed2_avg": 53.0}
    first = headline("mini", by_key, values.get, n_resamples=200, before_amendment=None)
    assert list(first.table.frame["method"]) == ["base model, prompt <2>", "full SFT, prompt <1>", "GRPO, prompt <2>"]
    d, lo, hi = (first.values[f"mini_grpo_p2_vs_base_{s}"] for s in ("diff", "lo", "hi"))
    assert lo <= d <= hi
    assert first.values["mini_caveat_base"].startswith("GRPO with prompt <2>, over its three seeds, ")
    assert ("within noise" in first.values["mini_caveat_base"]) == (lo <= 0 <= hi)
    assert first.values["mini_caveat_same_prompt"] == "(The same-prompt ablation has not been run.)"
    # the fixture's validation is far from solved: the caveat says what it is without calling it solved
    assert first.values["mini_caveat_solved"].startswith("Before training the base model answers 40.0% of the ")
    seeds = [ln for ln in first.figure.fig.axes[0].lines if list(ln.get_ydata()) == [2, 2, 2]]
    assert len(seeds) == 1 and sorted(seeds[0].get_xdata()) == [51.0, 52.0, 53.0]  # every seed drawn
    kept = tmp_path / "v3.json"
    kept.write_text(json.dumps({"archived": "2026-12-01", "values": {
        "verdict": "pooled: +3.6 points, 95% interval [+1.2, +6.0] (a bootstrap"}}))
    amended = amendment_values("mini", 2.0, kept)
    assert (amended["mini_amendment3_diff"], amended["mini_amendment3_lo"], amended["mini_amendment3_hi"]) == (
        3.6, 1.2, 6.0)
    assert "+3.6 points, 95% interval [+1.2, +6.0]; after it, +2.0" in amended["mini_caveat_amendment"]
    assert amendment_values("mini", 2.0, None)["mini_caveat_amendment"].startswith("(No archived build")  # never blank


# ------------------------------------------------------------------------------------ the book


def _html_text(path: Path) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8")))


@pytest.mark.slow
def test_listening_table_has_every_model_with_its_ablations(tmp_path):
    from aqa_core.study.listening import table_listening

    res = write_fixture_results(tmp_path)
    table = table_listening(res, n_resamples=500)
    methods = list(table.frame["model, method (seed 0)"])
    assert methods == ["Direct inference + Prompt <2>", "Full + Prompt <1>", "LoRA + Prompt <1>",
                       "GRPO + Prompt <2>", "GRPO + Prompt <3>"]  # prompt <1>'s direct inference has no ablation
    v = table.values
    for key in ("direct_p2", "sft_full", "grpo_p2"):
        assert v[f"mini_{key}_listening"] == pytest.approx(v[f"mini_{key}_real"] - v[f"mini_{key}_silence"])
        assert v[f"mini_{key}_listening_lo"] <= v[f"mini_{key}_listening"] <= v[f"mini_{key}_listening_hi"]
    assert v["mini_grpo_p2_listening"] > 0  # the fixture's ablated models are nearer chance
    assert v["mini_grpo_p2_silence_not_a_choice"] == 0  # the fixture answers with one of the choices
    (res / "grpo-prompt2" / "eval" / "sweep.json").unlink()  # a run without a sweep has no row
    assert "GRPO + Prompt <2>" not in list(table_listening(res, n_resamples=200).frame["model, method (seed 0)"])


def test_ablations_table_says_how_to_run_them_then_shows_them(tmp_path):
    from aqa_core.study.ablations import figure_ablations, table_ablations

    res = write_fixture_results(tmp_path)
    before = table_ablations(res, n_resamples=200)
    assert list(before.frame["ablation"]) == ["not run yet"]
    assert "study --plan ablations" in before.frame["run"][0] and before.values["mini_ablation_runs_done"] == 0
    assert before.values["mini_ablation_total"] == 13 and before.values["mini_ablation_expected_minutes"] > 0
    assert len(figure_ablations(res, n_resamples=200).fig.axes) == 1  # the placeholder
    assert math.isnan(before.values["mini_abl_grpo-p2_vs_sft-full_prompt2"])  # quoted by the trust page: always there
    abl = res / "ablations"
    for folder, source, seed in (("sft-full-train150", "sft-full", 0), ("sft-full-train150-seed1", "sft-full", 1),
                                 ("grpo-prompt2-silent", "grpo-prompt2", 0), ("sft-full-prompt2", "sft-lora", 0)):
        copy_run(res / source, abl / folder, seed)
    after = table_ablations(res, n_resamples=200)
    runs = list(after.frame["run"])
    assert "Full + Prompt <1>, 150 questions" in runs and "GRPO + Prompt <2>, silent training audio" in runs
    assert after.values["mini_ablation_runs_done"] == 3
    row = after.frame[after.frame["run"] == "Full + Prompt <1>, 150 questions"].iloc[0]
    assert row["seeds"] == 2 and row["ablation"] == "training-set size"
    # the main run it varies sits beside it, from the main study's folder
    assert "Full + Prompt <1>, 1,200 questions (the main run)" in runs
    v = after.values
    # a copy of the main run changes nothing; the LoRA run in full SFT's place changes what LoRA changes
    assert v["mini_abl_grpo-p2_silent_change"] == pytest.approx(0.0)
    assert v["mini_abl_grpo-p2_silent_change_lo"] <= 0 <= v["mini_abl_grpo-p2_silent_change_hi"]
    assert v["mini_abl_sft-full_prompt2_change"] == pytest.approx(
        v["mini_abl_sft-full_prompt2_mean"] - v["mini_abl_sft-full_train1200_mean"])
    fig = figure_ablations(res, n_resamples=200)
    assert len(fig.fig.axes) == 2 and len(fig.fig.axes[1].get_yticklabels()) == 2  # prompt <2>, silent GRPO
    # GRPO <2> against SFT trained with prompt <2> too: the comparison without the prompt confound
    assert (v["mini_abl_grpo-p2_vs_sft-full_prompt2_lo"] <= v["mini_abl_grpo-p2_vs_sft-full_prompt2"]
            <= v["mini_abl_grpo-p2_vs_sft-full_prompt2_hi"])
    assert ("With the prompt the same on both sides, GRPO + Prompt <2> minus Full + Prompt <2>"
            in v["mini_ablation_prompt_sentence"])
    assert ("1 of the 1 intervals" not in v["mini_ablation_size_sentence"]
            and "150 questions" in v["mini_ablation_size_sentence"])


@pytest.mark.book
def test_book_builds_from_fixture_results(tmp_path):
    """Execute the notebooks on fixture results with papermill (as the study does), build the book
    with warnings as errors, then read the HTML."""
    from aqa_core.study.pipeline.study import build_book, execute_notebooks

    res = write_fixture_results(tmp_path / "runs")
    shutil.rmtree(res / "grpo-prompt3")  # opt-in (design.OPT_IN): the default build has none
    rec = write_fixture_recipes(tmp_path)
    book = tmp_path / "book"
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("_build", "results"), symlinks=False)
    (tmp_path / "aqa_core").symlink_to(ROOT / "aqa_core")  # pages include code from ../aqa_core
    (book / "_config.yml").unlink(missing_ok=True)
    shutil.copy(ROOT / "_config.yml", book / "_config.yml")
    execute_notebooks(res, book / "results", recipes={"grpo": rec["grpo"], "sft": rec["sft"]},
                      figures_dir=tmp_path / "figures", result_dirs=[res, tmp_path / "runs" / "full"], cwd=ROOT)
    log = build_book(book)
    assert "WARNING" not in log and "ERROR" not in log, log[-3000:]
    html = book / "_build" / "html"

    t1 = _html_text(html / "table1.html")
    assert "Training Steps" in t1 and re.search(r"\b500\b", t1) and re.search(r"\b60\b", t1)
    t2 = _html_text(html / "table2.html")
    assert "64.50" in t2 and "GRPO + Prompt <2>" in t2.replace("&lt;", "<").replace("&gt;", ">")
    assert re.search(r"\d+\.\d \[\d+\.\d, \d+\.\d\]", t2), "mini rows with CIs"
    assert "McNemar" in t2
    figs = (html / "figures.html").read_text(encoding="utf-8")
    imgs = re.findall(r'<img[^>]+src="([^"]+\.png)"', figs)
    assert len(imgs) >= 2
    for src in imgs:
        assert (html / src).is_file(), src
    for page in html.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "{glue" not in text and "glue:" not in _html_text(page), f"unresolved glue in {page.name}"
    found = _html_text(html / "findings.html")
    assert re.search(r"\d+\.\d", found)
    assert "At the last checkpoints, GRPO + Prompt" in t2.replace("&lt;", "<").replace("&gt;", ">")
    assert "last minus chosen" in t2  # the plan's secondary comparison, with its table
    # the fixture results have no ablations: the findings quote the reference archive, its figure and sentences
    assert "the reference archive of" in found and "With the prompt the same on both sides" in found
    assert len(re.findall(r"<img", (html / "findings.html").read_text(encoding="utf-8"))) >= 1
    # the landing page: the verdict with its difference and interval first, then the figure and the table
    article = re.search(r'<article class="bd-article"[^>]*>(.*?)</article>',
                        (html / "intro.html").read_text(encoding="utf-8"), re.S).group(1)
    intro = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", article)).replace("&lt;", "<").replace("&gt;", ">")
    intro = re.sub(r"\s+([.,:;)])", r"\1", intro).replace("#", "")  # heading anchors, spaces before stops
    first = " ".join(intro.split()[:100])
    assert re.search(r"Verdict at the mini scale: (Not decided|Holds|Reversed)\. GRPO with prompt <2> scored "
                     r"[+−]\d+\.\d points", first), first
    assert re.search(r"95% interval \[[+−]\d+\.\d, [+−]\d+\.\d\]", first), first
    assert article.index("<img") < article.index("aqa-headline") < article.index("What changes how to read it")
    for page in ("intro.html", "findings.html", "figures.html"):  # every pasted figure's file was written
        for src in re.findall(r'<img[^>]+src="([^"]+\.png)"', (html / page).read_text(encoding="utf-8")):
            assert (html / src).is_file(), f"{page}: {src}"
    assert "within noise of" in intro or "scores above" in intro or "scores below" in intro
    # the report notebook makes the chapters' tables and figures without showing them again
    report = (html / "results" / "report.html").read_text(encoding="utf-8")
    # ... rendered (so that its images are written for the chapters) inside containers the CSS hides
    assert report.count("tag_aqa-hidden") >= 10 and ".tag_aqa-hidden { display: none; }" in (
        html / "_static" / "aqa.css").read_text(encoding="utf-8")
    # notebook pages read as reports: no code on any of them
    for page in (html / "results").glob("*.html"):
        assert "highlight-ipython3" not in page.read_text(encoding="utf-8"), f"{page.name} shows code"
    # GRPO <3>: its page is the reference archive's, with its banner; the findings say where its numbers come from
    p3 = _html_text(html / "results" / "grpo_prompt3.html")
    assert "This page shows the reference archive of" in p3 and "STUDY_ARGS=--prompt3" in p3
    assert re.search(r"GRPO, prompt <3> \(archived, \d{4}-\d\d-\d\d\)", intro), intro  # its row on the first screen
    assert "GRPO <3>'s numbers come from the reference archive of" in found.replace("&lt;", "<").replace("&gt;", ">")
    # only the report's own page or a copied page comes from the archive: no announcement on this build's book
    assert "This book shows" not in (html / "intro.html").read_text(encoding="utf-8")
    titles: dict[str, str] = {}
    for page in sorted(html.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        # no number printed with more digits than any format asks (a raw float: 55.00000000000001)
        raw = re.findall(r"\d+\.\d{7,}", _html_text(page))
        assert not raw, f"{page.relative_to(html)}: raw floats {raw[:3]}"
        assert "TqdmWarning" not in text and "site-packages" not in text, f"{page.name}: a warning on the page"
        m = re.search(r"<title>(.*?)</title>", text, re.S)
        if m and not page.name.startswith(("genindex", "search")):  # two pages of one title: ambiguous links
            assert m.group(1) not in titles, f"{page.relative_to(html)} and {titles[m.group(1)]} share a title"
            titles[m.group(1)] = str(page.relative_to(html))
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert "cdn.jsdelivr" not in (html / "method.html").read_text(encoding="utf-8")


def test_study_notebook_paths_exist():
    """Every notebook the study executes exists and has a `parameters` cell."""
    from aqa_core.study.pipeline.stages import NOTEBOOKS

    for nb_name in {nb for nb, _ in NOTEBOOKS.values()}:
        nb = json.loads((ROOT / "notebooks" / nb_name).read_text())
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, nb_name
        assert nb["cells"][0]["cell_type"] == "markdown" and "papermill" in "".join(nb["cells"][0]["source"])
        code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        assert not re.search(r"^\s*(def|for|while|class) ", code, re.M), f"{nb_name}: no functions or loops"


if __name__ == "__main__":  # write fixtures for a manual look: python tests/test_book.py DIR
    out = Path(sys.argv[1])
    print(write_fixture_results(out / "runs"), write_fixture_recipes(out))
    subprocess.run(["ls", "-R", str(out)], check=False)


def test_the_trust_page_counts_the_fingerprinted_mmau_versions():
    """book/trust.md states how many test-mini versions aqa_core/eval/mmau_versions.json holds."""
    versions = json.loads((ROOT / "aqa_core" / "eval" / "mmau_versions.json").read_text())["versions"]
    text = (ROOT / "book" / "trust.md").read_text(encoding="utf-8")
    assert f"fingerprints {len(versions)} published versions" in text
    assert versions[0]["date"] in text and versions[-1]["date"] in text


def test_the_executed_notebooks_take_their_page_titles(tmp_path):
    from aqa_core.study.pipeline.execute import retitle
    from aqa_core.study.pipeline.stages import NOTEBOOKS, page_titles

    titles = page_titles()
    assert len({titles[f"results/{n}"] for n in NOTEBOOKS}) == len(NOTEBOOKS)  # one title per page
    nb = {"cells": [{"cell_type": "code", "source": "x = 1"},
                    {"cell_type": "markdown", "source": ["intro\n", "# Template heading\n", "text\n"]}]}
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(nb))
    retitle(path, "Direct inference, prompt <2>")
    cell = json.loads(path.read_text())["cells"][1]
    assert "".join(cell["source"]) == "intro\n# Direct inference, prompt <2>\ntext\n"


def test_figure5_puts_every_run_on_budget_axes(tmp_path):
    from aqa_core.study.budget import run_budget
    from aqa_core.study.figures import BUDGET_AXES, figure_budget_curves

    res = write_fixture_results(tmp_path / "runs")
    fig = figure_budget_curves(res)
    axes = fig.fig.axes
    assert len(axes) == len(BUDGET_AXES) and all(ax.get_xscale() == "log" for ax in axes)
    assert all(ax.get_xlabel() for ax in axes) and axes[0].get_ylabel().startswith("test accuracy")
    assert fig.values["fig5_grpo_p2_questions_seen"] == run_budget(res / "grpo-prompt2")["questions_seen"]
    # every method's line on the questions-seen panel, its last point at the run's whole budget
    lines = {ln.get_label(): ln for ln in axes[0].get_lines()}
    assert {"GRPO + Prompt <2>, seed 0", "Full + Prompt <1>, seed 0"} <= set(lines)
    assert lines["GRPO + Prompt <2>, seed 0"].get_xdata()[-1] == run_budget(res / "grpo-prompt2")["questions_seen"]
    assert any(ln.get_linestyle() == "--" for ln in axes[0].get_lines())  # the base model's reference line
