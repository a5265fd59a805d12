"""Checkpoint sweeps: every checkpoint of a run (and the model it started from, as step 0)
evaluated on the test file and on a validation file, tabulated per task and step (the data of
Figures 3 and 4), with two selections side by side: the best checkpoint on the test set itself
(what the paper did: optimistic) and the best on validation, scored on test.

    python -m aqa_core sweep --run RUN_DIR --data QUESTIONS.json --audio-dir DIR \
        [--validation VAL.jsonl --validation-audio-dir DIR] [--include-base]

Each checkpoint is one `aqa_core.eval.evaluate.evaluate_file` (cached and resumable per file).
While the audio tower's weights do not change (the mini recipes freeze it) each clip is encoded
once for the whole sweep (`aqa_core.tower_cache`), as is each batch's processor output (the
wavs read, the mel features, the token ids: `aqa_core.eval.evaluate.InputCache`); a `final/`
holding the last checkpoint's tensors is not evaluated twice. The result is `RUN/eval/sweep.json` (layout:
`aqa_core.runs`); an audio ablation (`--audio silence|mismatched`) goes to `RUN/eval/audio-<choice>/` instead.
On every GPU of a node: `torchrun --nproc_per_node 8 -m aqa_core sweep --run-dir RUN_DIR ...`:
each evaluation is split across the processes (`aqa_core.eval.evaluate`), rank 0 writes.
"""
from __future__ import annotations

import argparse
import csv
import gc
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..data import TASKS
from ..files import write_atomic
from ..prompts import as_prompt
from ..runs import (
    FINAL_DIR,
    MERGED_DIR,
    SWEEP_FILE,
    checkpoint_problem,
    checkpoint_step,
    checkpoints,
    model_dir,
    predictions_name,
    read_config,
)
from ..tower_cache import TowerCache
from .evaluate import (
    AUDIO_ABLATIONS,
    EvalError,
    InputCache,
    add_eval_arguments,
    eval_world,
    evaluate_file,
    exit_code,
    load_model,
)

TEST_AT = ("all", "alternate", "selected", "chosen")


def run_models(run_dir: str | Path, include_base: bool = False) -> list[tuple[str, int | None, Path]]:
    """(name, step, folder) of every `checkpoint-N` of a run, in step order, then `final/` if present
    (its step is the run's last global step from a `trainer_state.json` in the run, in final/ or
    else in the last checkpoint: the final model may be a few steps past it). `include_base` puts
    the model the run started from (`model_name_or_path` in its config.yaml) first, as step 0."""
    run_dir = Path(run_dir)
    found: list[tuple[str, int | None, Path]] = []
    if include_base:
        base = read_config(run_dir).get("model_name_or_path")
        if not base:
            raise EvalError(f"{run_dir / 'config.yaml'}: no model_name_or_path to evaluate as the base (step 0)")
        found.append(("base", 0, Path(base)))
    for p in checkpoints(run_dir):
        problem = checkpoint_problem(p, resume=False)
        if problem:  # an interrupted save (resume rewrites it): nothing whole to evaluate
            warnings.warn(f"{p}: not a complete checkpoint ({problem}); not evaluated", stacklevel=2)
            continue
        found.append((p.name, checkpoint_step(p), p))
    final = run_dir / FINAL_DIR
    if (final / "config.json").is_file() or (final / MERGED_DIR / "config.json").is_file():
        step = None
        last = [f[2] / "trainer_state.json" for f in found if f[0].startswith("checkpoint-")][-1:]
        for state in (run_dir / "trainer_state.json", final / "trainer_state.json", *last):
            if state.is_file():
                step = json.loads(state.read_text(encoding="utf-8")).get("global_step")
                break
        found.append(("final", step, final))
    if not found or found[-1][0] == "base":
        raise EvalError(f"{run_dir}: no checkpoint-N/ or final/ model folders to evaluate")
    return found


def run_prompt(run_dir: str | Path) -> int:
    """The prompt a run was trained with: its config's `prompt`, or 1 for an SFT run."""
    cfg = read_config(run_dir)
    if cfg.get("prompt") is not None:
        return int(as_prompt(cfg["prompt"]))
    if "sft_tagged" in cfg:  # an SFT run from before its `prompt` key: prompt <1>
        return 1
    raise EvalError(f"{run_dir}: cannot tell the run's prompt from {Path(run_dir) / 'config.yaml'}; pass --prompt")


def _accuracy(summary: dict | None, task: str | None = None) -> float | None:
    if summary is None:
        return None
    report = summary["report"]
    tally = report["total"] if task is None else report.get("task", {}).get(task)
    return tally["accuracy"] if tally and tally["total"] else None


def _pick(rows: list[dict], key: str) -> dict | None:
    scored = [r for r in rows if r[key] is not None]
    return max(scored, key=lambda r: (r[key], -(r["step"] or 0))) if scored else None  # ties: earliest


def _same_weights(a: Path, b: Path) -> bool:
    """True when two model folders hold the same tensors (compared one tensor at a time, each
    file opened once; the files' bytes may differ in tensor order)."""
    from contextlib import ExitStack

    import torch
    from safetensors import safe_open

    with ExitStack() as stack:
        def index(folder: Path) -> dict:  # tensor name -> the open file holding it
            files = [stack.enter_context(safe_open(str(f), "pt"))
                     for f in sorted(model_dir(folder).glob("*.safetensors"))]
            return {k: fh for fh in files for k in fh.keys()}

        ia, ib = index(a), index(b)
        if not ia or ia.keys() != ib.keys():
            return False
        return all(torch.equal(ia[k].get_tensor(k), ib[k].get_tensor(k)) for k in ia)


def _announce_twin(models: list[tuple[str, int | None, Path]], model: tuple[str, int | None, Path]) -> bool:
    """True (and said) when `final/` holds the same weights as a checkpoint of the same step."""
    twin = _same_weights_checkpoint(models, model[1], model[2])
    if twin is not None and eval_world()[0] == 0:
        print(f"final: the same weights as {twin} (not evaluated again)")
    return twin is not None


def _same_weights_checkpoint(models: list[tuple[str, int | None, Path]], step: int | None,
                             folder: Path) -> str | None:
    """The checkpoint at `step` whose weight files are byte-identical to `folder`'s, if any (a run
    saves its last step as a checkpoint and again as final/)."""
    for name, s, other in models:
        if name.startswith("checkpoint-") and s == step and _same_weights(other, folder):
            return name
    return None


def sweep(
    run_dir: str | Path,
    data: str | Path | None,
    audio_dir: str | Path | None = None,
    validation: str | Path | None = None,
    validation_audio_dir: str | Path | None = None,
    prompt=None,
    out_dir: str | Path | None = None,
    include_base: bool = False,
    test_at: str = "all",
    validation_limit: int | None = None,
    ablate_selected: Sequence[str] = (),
    base_test_from: str | Path | None = None,
    **eval_kwargs: Any,
) -> dict:
    """Evaluate every checkpoint of a run on the test file (and the validation file), write
    `sweep.json` and `sweep.csv` (accuracy per task per step: Figures 3-4's data) under
    `out_dir` (default RUN/eval), and report two selections: best on test (the paper's,
    optimistic) and best on validation, scored on test; the base, when included, is step 0 of the
    curves but not a candidate (a run is scored at one of its own checkpoints, as in the paper).
    Evaluated checkpoints are cached. An `audio` ablation (see `evaluate_file`) defaults to
    `out_dir` RUN/eval/audio-<choice>, so it never overwrites the real sweep. `data` None sweeps the
    validation file only (a learning-rate search that must never read the test set). `test_at`
    "selected" scores the test file only at the checkpoint best on validation and at the last one,
    and reports no best-on-test; "chosen" only at the checkpoint best on validation (the study's
    extra seeds and ablations: their chosen score is all the book reads of them);
    "alternate" scores it at the base (step 0, when included), at every second checkpoint counted
    back from the last, and at the one best on validation (a test curve at half the cost; its
    best-on-test is the best of the checkpoints tested). `validation_limit` scores the first N
    validation items only (the analysis plan's validation subset). `ablate_selected` (e.g.
    silence, mismatched) also scores the checkpoint chosen on validation on the test file with
    each audio ablation (`RUN/eval/CKPT.test.audio-<choice>.json`; their accuracies in the
    selection's `audio_ablations`): how much of the run's score comes from listening.
    `base_test_from`, a predictions file of the base model on the same test file (an `evaluate`
    output with its score files), is taken as the base's test evaluation when its settings are
    the ones the sweep would use (it is then a cache hit; otherwise it is evaluated as usual)."""
    run_dir = Path(run_dir)
    if data is None and validation is None:
        raise EvalError("sweep: give a test file (--data), a validation file (--validation), or both")
    audio = eval_kwargs.get("audio", "real")
    default_dir = run_dir / SWEEP_FILE.parent
    out_dir = Path(out_dir) if out_dir else default_dir if audio == "real" else default_dir / f"audio-{audio}"
    prompt = int(as_prompt(prompt)) if prompt is not None else run_prompt(run_dir)
    eval_kwargs.setdefault("verbose", False)  # one line per checkpoint instead of full reports
    # A frozen tower is byte-identical in every checkpoint: each clip is encoded once per sweep.
    eval_kwargs.setdefault("tower_cache", TowerCache(device="cpu"))
    # ... and each batch's processor output (wavs read, mel features, token ids) is made once too
    eval_kwargs.setdefault("input_cache", InputCache())
    if test_at not in TEST_AT:
        raise EvalError(f"test_at must be one of {TEST_AT}, got {test_at!r}")
    if test_at != "all" and (data is None or validation is None):
        raise EvalError(f"--test-at {test_at} needs both a test file (--data) and a validation file (--validation)")
    if validation_limit is not None and validation_limit < 1:
        raise EvalError(f"--validation-limit must be a positive number of items, got {validation_limit}")
    rank, _ = eval_world()  # several processes: each evaluation is split across them; rank 0 writes
    say = print if rank == 0 else (lambda *a, **k: None)
    models = run_models(run_dir, include_base)
    models = [m for m in models if not (m[0] == "final" and _announce_twin(models, m))]

    bad = [a for a in ablate_selected if a not in AUDIO_ABLATIONS or a == "real"]
    if bad or (ablate_selected and (data is None or audio != "real")):
        raise EvalError(f"--ablate-selected takes {', '.join(a for a in AUDIO_ABLATIONS if a != 'real')} with a test "
                        f"file (--data) and the real audio, got {list(ablate_selected)}")

    def evaluate(folder: Path, name: str, which: str, path, audio_dir_, ablation: str | None = None) -> dict:
        kwargs = ({**eval_kwargs, "limit": validation_limit} if which == "validation" and validation_limit
                  else eval_kwargs)
        if ablation:
            kwargs = {**kwargs, "audio": ablation}
        cache: list = []

        def loader(folder=folder, cache=cache):
            if not cache:
                cache.append(load_model(folder))
            return cache[0]

        result = evaluate_file(folder, path, out_dir / predictions_name(name, which, ablation or "real"), audio_dir_,
                               prompt, loader=loader, overwrite=True, **kwargs)
        cache.clear()
        gc.collect()
        return result

    if base_test_from and include_base and data is not None:
        _seed_base_test(Path(base_test_from), out_dir / predictions_name("base"))
    results: dict[str, dict] = {}
    for name, _step, folder in models:  # validation everywhere; test everywhere when test_at="all"
        results[name] = {}
        if data is not None and test_at == "all":
            results[name]["test"] = evaluate(folder, name, "test", data, audio_dir)
        if validation is not None:
            results[name]["validation"] = evaluate(folder, name, "validation", validation, validation_audio_dir)
    if test_at != "all":  # test where a selection can land (the best on validation, the last) and the curve's points
        trained = [(n, st) for n, st, _ in models if n != "base"]
        best = _pick([{"checkpoint": n, "step": st, "validation": _accuracy(results[n].get("validation"))}
                      for n, st in trained], "validation")
        chosen = {best["checkpoint"]} if best else set()
        chosen |= {trained[-1][0]} if trained and test_at != "chosen" else set()
        if test_at == "alternate":
            chosen |= {n for n, _ in trained[::-1][::2]} | {n for n, _, _ in models if n == "base"}
        for name, _step, folder in models:
            if name in chosen:
                results[name]["test"] = evaluate(folder, name, "test", data, audio_dir)
    rows = []
    for name, step, _ in models:
        test, val = results[name].get("test"), results[name].get("validation")
        row = {"checkpoint": name, "step": step, "test": _accuracy(test),
               **{f"test_{t}": _accuracy(test, t) for t in TASKS},
               "test_ci95": test["report"]["total"]["ci95"] if test else None,
               "test_n": test["report"]["total"]["total"] if test else None,
               "validation": _accuracy(val), "validation_n": val["report"]["total"]["total"] if val else None}
        rows.append(row)
        parts = ([f"test {_pct(row['test'])}% of {row['test_n']}"] if test else []) + \
            ([f"validation {_pct(row['validation'])}% of {row['validation_n']}"] if val else [])
        say(f"{name}: " + ", ".join(parts)
              + (f" (audio: {audio})" if audio != "real" else "")
              + (" (cached)" if all(r["cached"] for r in (test, val) if r is not None) else ""))
    trained = [r for r in rows if r["checkpoint"] != "base"]  # the base is step 0 of the curve, not a candidate
    # with test_at="selected" or "chosen" the test set saw one or two checkpoints: no "best on test";
    # with "alternate" it is the best of the checkpoints tested
    best_test = _pick(trained, "test") if test_at in ("all", "alternate") else None
    best_val = _pick(trained, "validation")
    keep = ("checkpoint", "step", "test", "validation")
    ablations = {}
    if best_val is not None and ablate_selected:
        folder = next(f for n, _, f in models if n == best_val["checkpoint"])
        for a in ablate_selected:
            ablations[a] = _accuracy(evaluate(folder, best_val["checkpoint"], "test", data, audio_dir, ablation=a))
            say(f"{best_val['checkpoint']}: test {_pct(ablations[a])}% with the audio ablated ({a})")
    result = {"run": str(run_dir), "data": str(data) if data else None,
              "validation": str(validation) if validation else None,
              "prompt": prompt, "audio": audio, "test_at": test_at, "validation_limit": validation_limit,
              "rows": rows,
              "selection": {
                  "best_on_test": best_test and {k: best_test[k] for k in keep},
                  "best_on_validation": best_val and {**{k: best_val[k] for k in keep},
                                                      **({"audio_ablations": ablations} if ablations else {})},
              }}
    if rank != 0:
        return result
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / SWEEP_FILE.name, json.dumps(result, indent=2) + "\n")
    fields = ["checkpoint", "step", "test", *[f"test_{t}" for t in TASKS], "test_n", "validation", "validation_n"]
    with (out_dir / "sweep.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    print(format_sweep(result))
    return result


def _seed_base_test(src: Path, dst: Path) -> None:
    """Copy an existing evaluation of the base model (predictions and score files) to where the
    sweep keeps the base's test evaluation, when nothing is there yet: `evaluate_file` then
    reuses it if its settings match and evaluates again (overwriting it) if they do not."""
    from .evaluate import SCORE_JSON_SUFFIX, SCORE_TXT_SUFFIX

    pairs = [(src.with_name(src.name + x), dst.with_name(dst.name + x))
             for x in ("", SCORE_JSON_SUFFIX, SCORE_TXT_SUFFIX)]
    if dst.exists() or not all(a.is_file() for a, _ in pairs):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    for a, b in reversed(pairs):  # the predictions last: a half-done copy is never taken for a result
        write_atomic(b, a.read_text(encoding="utf-8"))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def format_sweep(result: dict) -> str:
    """The sweep as a table plus the two selections side by side."""
    def pct(x):
        return "   -  " if x is None else f"{x:6.2f}"

    lines = [f"{'checkpoint':<16}{'step':>6}  {'test':>6}  {'sound':>6}  {'music':>6}  {'speech':>6}  {'valid':>6}"]
    for r in result["rows"]:
        step = "-" if r["step"] is None else r["step"]
        cells = "  ".join(pct(r[k]) for k in ("test", "test_sound", "test_music", "test_speech", "validation"))
        lines.append(f"{r['checkpoint']:<16}{step:>6}  {cells}")
    sel = result["selection"]
    tested = "best of those tested" if result.get("test_at") == "alternate" else "best on test"
    for label, key in ((f"{tested} (paper; optimistic)", "best_on_test"),
                       ("best on validation, scored on test", "best_on_validation")):
        s = sel[key]
        picked = f"{s['checkpoint']} test {pct(s['test']).strip()}%" if s else "n/a (no validation)"
        lines.append(f"{label:<36}: {picked}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line


def cli_sweep(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m aqa_core sweep", description=sweep.__doc__.split("\n\n")[0])
    ap.add_argument("--run", "--run-dir", dest="run", required=True,
                    help="run folder with checkpoint-N/ (and final/); under torchrun write --run-dir (torchrun "
                         "takes --run for its own --run-path)")
    ap.add_argument("--data", default=None, help="test question JSON (MMAU schema); none: validation only")
    ap.add_argument("--audio-dir", default=None)
    ap.add_argument("--validation", default=None, help="validation questions (R1-AQA JSONL or MMAU JSON)")
    ap.add_argument("--validation-audio-dir", default=None)
    ap.add_argument("--prompt", default=None, help="default: the run's config (`prompt`; SFT runs: 1)")
    ap.add_argument("--out-dir", default=None, help="default: RUN/eval")
    ap.add_argument("--test-at", choices=TEST_AT, default="all",
                    help="all: the test file at every checkpoint; chosen: only at the one best on validation; "
                         "selected: that and the last; alternate: those, the base and every second checkpoint "
                         "back from the last (all but 'all' need --validation)")
    ap.add_argument("--validation-limit", type=int, default=None, metavar="N",
                    help="score the first N validation items only (default: all)")
    ap.add_argument("--ablate-selected", nargs="+", default=[], metavar="AUDIO",
                    help="also score the checkpoint chosen on validation with these audio ablations "
                         "(silence, mismatched)")
    ap.add_argument("--base-test-from", default=None, metavar="PREDICTIONS",
                    help="an evaluate output of the base model on the same test file: reused as step 0's test "
                         "evaluation when its settings match (else evaluated again)")
    ap.add_argument("--include-base", action="store_true",
                    help="also evaluate the run's starting model (config model_name_or_path) as step 0")
    add_eval_arguments(ap)
    a = ap.parse_args(argv)
    return exit_code(lambda: sweep(a.run, a.data, a.audio_dir, a.validation, a.validation_audio_dir, a.prompt,
                                   a.out_dir, a.include_base, batch_size=a.batch_size,
                                   max_new_tokens=a.max_new_tokens, decoding=a.decoding, seed=a.seed,
                                   test_at=a.test_at, validation_limit=a.validation_limit,
                                   ablate_selected=a.ablate_selected, base_test_from=a.base_test_from, limit=a.limit,
                                   skip_missing=a.skip_missing, audio=a.audio,
                                   tower_store=a.tower_cache_file))


cli = cli_sweep
