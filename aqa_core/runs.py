"""Run folders: the one layout every training run writes and every later stage reads. Torch-free,
so notebook kernels, the sweep and the study read runs without importing transformers.

    RUN/config.yaml           the resolved recipe (every field, defaults included)
    RUN/trainer_args.json     the GRPOConfig / SFTConfig actually used (`args.to_dict()`, latest launch)
    RUN/provenance.json       every launch (the first, then each --resume): command, git commit,
                              package versions, world size, host, time
    RUN/metrics.jsonl         one JSON object per logging step, then a `"summary": true` row
    RUN/checkpoint-N/         what the HF Trainer saves (LoRA runs add `merged/`, a plain model);
                              complete once its trainer_state.json, written last, says step N
    RUN/final/                the model at the end, a plain model folder (`final/adapter/` for LoRA);
                              written as .final.partial/ and renamed, so it is whole or absent
    RUN/eval/sweep.json       every checkpoint scored (aqa_core.eval.sweep)
    .RUN.lock (beside RUN)    the lock of the one process training into RUN (`run_folder_lock`);
                              a file, empty when no one holds it

>>> import tempfile
>>> from dataclasses import dataclass
>>> @dataclass
... class Cfg:
...     learning_rate: float = 1e-6
>>> d = tempfile.mkdtemp()
>>> _ = prepare_run_dir(d, Cfg())
>>> (Path(d) / "config.yaml").read_text()
'learning_rate: 1.0e-06\\n'
>>> last_checkpoint(d) is None
True
"""
from __future__ import annotations

import contextlib
import enum
import json
import os
import platform
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from .config import save_config, to_dict
from .data import iter_jsonl
from .files import hold_output, write_atomic

CONFIG_FILE = "config.yaml"
TRAINER_ARGS_FILE = "trainer_args.json"
PROVENANCE_FILE = "provenance.json"
METRICS_FILE = "metrics.jsonl"
FINAL_DIR = "final"  # the model at the end of a run, always a plain model folder
FINAL_PARTIAL_DIR = ".final.partial"  # final/ while it is written (renamed to final/ when whole)
TRAINER_STATE_FILE = "trainer_state.json"  # the HF Trainer writes it last in a checkpoint
#: A checkpoint's weights: plain, sharded, LoRA adapter, legacy; DeepSpeed keeps its own
#: (weights and optimizer) in `global_stepN/`.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors", "pytorch_model.bin")
OPTIMIZER_FILE = "optimizer.pt"
MERGED_DIR = "merged"  # checkpoint-N/merged/: a LoRA checkpoint as a plain model folder
SWEEP_FILE = Path("eval") / "sweep.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")

#: Keys that may change between an interrupted run and its resumption (extending a run, or
#: checkpointing/logging more often, does not change what was trained so far).
RESUMABLE_CHANGES = frozenset({"max_steps", "save_steps", "logging_steps", "output_dir", "save_total_limit"})
#: Schedules a resumed run can be extended under (a larger max_steps): the rate does not depend on it.
CONSTANT_SCHEDULES = frozenset({"constant", "constant_with_warmup"})
#: Packages whose versions a run records (those not installed are left out).
RECORDED_PACKAGES = ("aqa_core", "torch", "transformers", "trl", "peft", "accelerate", "deepspeed", "datasets",
                     "numpy", "soundfile", "soxr")


class RunDirError(RuntimeError):
    """A run or model folder that cannot be used as asked: the message names the folder and the fix."""


def is_main_process() -> bool:
    """True on the process that owns the files (rank 0 under `accelerate launch`/torchrun)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0


# ----------------------------------------------------------------------------- checkpoints


def checkpoints(run_dir: str | Path) -> list[Path]:
    """The `checkpoint-N` folders of a run, in step order."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_step(path: str | Path) -> int:
    """N of a `checkpoint-N` folder.

    >>> checkpoint_step("runs/x/checkpoint-40")
    40
    """
    m = _CHECKPOINT_RE.match(Path(path).name)
    if not m:
        raise RunDirError(f"{path}: not a checkpoint-N folder")
    return int(m.group(1))


def checkpoint_state(path: str | Path) -> dict | None:
    """The `trainer_state.json` of a checkpoint, or None when it is missing or does not parse."""
    try:
        state = json.loads((Path(path) / TRAINER_STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def checkpoint_problem(path: str | Path, resume: bool = True) -> str | None:
    """Why `checkpoint-N` cannot be resumed from, or None when it is complete. The HF Trainer
    writes a checkpoint's weights, then its optimizer, scheduler and RNG state, then
    `trainer_state.json` last: a save that was interrupted (a kill, a full disk) has no such file,
    or one that does not parse or names another step. A checkpoint whose optimizer state was
    removed (weights only) can be evaluated but not resumed (`resume` False: complete enough to
    evaluate)."""
    path = Path(path)
    if not (path / TRAINER_STATE_FILE).is_file():
        return f"no {TRAINER_STATE_FILE}: its save was interrupted"
    state = checkpoint_state(path)
    if state is None:
        return f"{TRAINER_STATE_FILE} does not parse: its save was interrupted"
    if state.get("global_step") != checkpoint_step(path):
        return f"{TRAINER_STATE_FILE} is for step {state.get('global_step')}"
    deepspeed = any(p.is_dir() for p in path.glob("global_step*"))
    if not deepspeed and not any((path / f).is_file() for f in WEIGHT_FILES):
        return "no model weights"
    if resume and not optimizer_state_files(path):
        return "no optimizer state: weights only (kept for evaluation; keep_optimizer_state prunes it)"
    return None


def optimizer_state_files(path: str | Path) -> list[Path]:
    """The optimizer state of a checkpoint: `optimizer.pt`, or DeepSpeed's `*optim_states.pt`
    shards in `global_stepN/` (the fp32 master weights and moments: most of a ZeRO checkpoint)."""
    path = Path(path)
    return [p for p in [path / OPTIMIZER_FILE, *sorted(path.glob("global_step*/*optim_states.pt"))] if p.is_file()]


def prune_optimizer_state(path: str | Path) -> int:
    """Delete a checkpoint's optimizer state (its weights stay: it can still be evaluated, not
    resumed); returns the bytes freed."""
    freed = 0
    for f in optimizer_state_files(path):
        freed += f.stat().st_size
        f.unlink()
    return freed


def last_checkpoint(run_dir: str | Path, warn: bool = True) -> Path | None:
    """The newest complete checkpoint of a run (the one `--resume` continues from), or None.
    Our own rather than transformers' `get_last_checkpoint`: a half-written save is not a
    checkpoint (`checkpoint_problem`); each newer incomplete one is skipped with a warning
    naming it and the reason (the next save of that step overwrites it)."""
    for ckpt in reversed(checkpoints(run_dir)):
        problem = checkpoint_problem(ckpt)
        if problem is None:
            return ckpt
        if warn:
            warnings.warn(f"{ckpt}: not a complete checkpoint ({problem}); resuming from an earlier one",
                          stacklevel=2)
    return None


def training_done(checkpoint: str | Path, max_steps: int | None = None) -> bool:
    """True when a (complete) checkpoint is the end of its run: its step reached the run's total
    (`trainer_state.json`'s max_steps), and `max_steps`, the recipe's now (which --resume may
    raise to extend a run; <= 0 means "by epochs"), does not ask for more."""
    state = checkpoint_state(checkpoint) or {}
    step, total = state.get("global_step"), state.get("max_steps")
    if not isinstance(step, int) or not isinstance(total, int) or step < total:
        return False
    return max_steps is None or max_steps <= 0 or max_steps <= step


def final_complete(run_dir: str | Path) -> bool:
    """`final/` exists whole (it is renamed into place only once written): a model folder."""
    final = Path(run_dir) / FINAL_DIR
    return (final / "config.json").is_file() or (final / MERGED_DIR / "config.json").is_file()


def model_dir(path: str | Path) -> Path:
    """The folder `from_pretrained` reads for a checkpoint, `final/` or base model folder:
    `path/merged/` for a LoRA checkpoint, else `path` itself, which must hold a `config.json`."""
    path = Path(path)
    if (path / MERGED_DIR / "config.json").is_file():
        return path / MERGED_DIR
    if (path / "config.json").is_file():
        return path
    if (path / "adapter_config.json").is_file():
        raise RunDirError(f"{path}: a LoRA adapter without a merged model; expected {path}/{MERGED_DIR}/ "
                          "(the LoRA runs write it at every checkpoint)")
    raise RunDirError(f"{path}: not a model folder (no config.json)")


def check_model_folder(path: str | Path) -> Path:
    """`model_dir(path)`, checked before any model work: its `config.json` parses, and every
    safetensors weight file it names is whole (its header parses and the file is as long as the
    header says). A broken or truncated folder is a `RunDirError` naming the file, not a
    traceback from deep inside `from_pretrained`. Reads headers only."""
    folder = model_dir(path)
    try:
        json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RunDirError(f"{folder / 'config.json'}: not valid JSON ({exc}); the model folder is damaged") from None
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RunDirError(f"{index}: not a valid shard index ({exc})") from None
        files = [folder / f for f in shards]
    else:
        files = [folder / f for f in ("model.safetensors", "adapter_model.safetensors") if (folder / f).exists()]
    if not files and not (folder / "pytorch_model.bin").is_file():
        raise RunDirError(f"{folder}: no model weights (model.safetensors or a shard index)")
    for f in files:
        problem = safetensors_problem(f)
        if problem:
            raise RunDirError(f"{f}: {problem}; the model folder is damaged (an interrupted copy or save?)")
    return folder


def safetensors_problem(path: str | Path) -> str | None:
    """Why a safetensors file is not whole, or None: missing, a header that does not parse, or a
    length other than the header's (8 bytes + header + the end of its last tensor)."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or 8 + n > size:
            return f"truncated or not safetensors ({size} bytes)"
        try:
            header = json.loads(fh.read(n))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return "its header does not parse"
    if size != 8 + n + end:
        return f"truncated ({size:,} bytes; its header says {8 + n + end:,})"
    return None


# ----------------------------------------------------------------------------- creating a run


def prepare_run_dir(run_dir: str | Path, cfg: Any, resume: bool = False) -> Path:
    """Create `run_dir` and write the resolved config (every field) as `config.yaml`.

    A folder that already holds a run (metrics or checkpoints) is an error unless `resume` is
    set; when resuming, the saved config must agree with `cfg` except for RESUMABLE_CHANGES
    (so the step count and data order really continue); a key the saved config lacks counts as
    its default (a recipe field added since). Only the main process writes.
    """
    run_dir = Path(run_dir)
    has_run = (run_dir / METRICS_FILE).exists() or bool(checkpoints(run_dir))
    if resume:
        if last_checkpoint(run_dir, warn=False) is None:
            found = checkpoints(run_dir)
            detail = f" ({found[-1].name}: {checkpoint_problem(found[-1])})" if found else ""
            raise RunDirError(f"{run_dir}: --resume given but the folder has no complete checkpoint-N to resume "
                              f"from{detail}; start again in a new --output-dir")
        saved_path = run_dir / CONFIG_FILE
        if saved_path.is_file():
            saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
            now = to_dict(cfg)
            defaults = to_dict(type(cfg)())
            saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
            differ = sorted(k for k in set(saved) | set(now)
                            if saved.get(k) != now.get(k) and k not in RESUMABLE_CHANGES)
            schedule = now.get("lr_scheduler_type", saved.get("lr_scheduler_type"))
            longer = isinstance(now.get("max_steps"), int) and isinstance(saved.get("max_steps"), int) \
                and now["max_steps"] > saved["max_steps"] > 0
            if longer and schedule not in CONSTANT_SCHEDULES:
                raise RunDirError(
                    f"{run_dir}: cannot extend a run from max_steps {saved['max_steps']} to {now['max_steps']} with "
                    f"the {schedule!r} learning-rate schedule: the resumed scheduler keeps the old length (the first "
                    f"extra step would run at learning rate 0); start a new run, or use a constant schedule")
            if differ:
                detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in differ)
                raise RunDirError(
                    f"{run_dir}: cannot resume with a different config ({detail}); "
                    f"only {', '.join(sorted(RESUMABLE_CHANGES))} may change"
                )
    elif has_run:
        raise RunDirError(
            f"{run_dir}: already holds a run (metrics.jsonl or checkpoint-N); pass --resume to continue it "
            "or choose another --output-dir"
        )
    if is_main_process():
        tmp = save_config(cfg, run_dir, f".{CONFIG_FILE}.{os.getpid()}.tmp")
        os.replace(tmp, run_dir / CONFIG_FILE)  # atomic: other ranks may be reading it
    return run_dir


def git_commit(repo: Path) -> dict[str, Any] | None:
    """HEAD of the checkout this package's source lives in, and whether its tracked files differ
    from it; None when the package is not a checkout's own (e.g. installed into a venv that sits
    inside some other repository)."""
    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if (top is None or Path(top).resolve() != repo.resolve()
            or git("ls-files", "aqa_core/__init__.py") != "aqa_core/__init__.py"):
        return None
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Where a run comes from: the command, the code (git commit of this package's repository,
    when it is a checkout), the package versions, the host and the world size."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"command": list(sys.argv if argv is None else argv), "cwd": os.getcwd(),
            "git": git_commit(Path(__file__).resolve().parents[1]), "packages": versions,
            "host": platform.node(), "platform": platform.platform(),
            "world_size": int(os.environ.get("WORLD_SIZE", "1")),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def _jsonable(value: Any) -> Any:
    """A trainer-args value as JSON: containers recursively, enums by value, other objects as text."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    return str(value)


def write_run_record(run_dir: str | Path, trainer_args: dict[str, Any]) -> None:
    """Write `trainer_args.json` (the effective trainer arguments of this launch) and add this
    launch to `provenance.json` (a resumed run keeps its earlier launches), beside `config.yaml`,
    atomically; only the main process writes."""
    if not is_main_process():
        return
    run_dir = Path(run_dir)
    path = run_dir / PROVENANCE_FILE
    launches = json.loads(path.read_text(encoding="utf-8")).get("launches", []) if path.is_file() else []
    for name, obj in ((TRAINER_ARGS_FILE, _jsonable(trainer_args)),
                      (PROVENANCE_FILE, {"launches": [*launches, provenance()]})):
        write_atomic(run_dir / name, json.dumps(obj, indent=1, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- reading a run


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's resolved `config.yaml` as a dict ({} when the folder has none)."""
    path = Path(run_dir) / CONFIG_FILE
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}) if path.is_file() else {}


def read_metrics(run_dir: str | Path, summary: bool = False) -> list[dict]:
    """The rows of `<run_dir>/metrics.jsonl` (per-step rows; `summary=True` adds the final one)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no metrics file (has the run started?)")
    return [row for _, row in iter_jsonl(path) if summary or not row.get("summary")]


def run_finished(run_dir: str | Path) -> bool:
    """A run is finished when its metrics end with the trainer's summary row."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return False
    rows = [row for _, row in iter_jsonl(path)]
    return bool(rows) and bool(rows[-1].get("summary"))


def tenth_means(values: Sequence[float]) -> tuple[float, float]:
    """Mean over the first and over the last tenth of a series (at least one value each).

    >>> tenth_means([i / 10 for i in range(1, 21)])
    (0.15, 1.95)
    """
    if not values:
        raise ValueError("an empty series has no first or last tenth")
    n = max(1, len(values) // 10)
    return round(sum(values[:n]) / n, 10), round(sum(values[-n:]) / n, 10)


def first_last_tenth(rows: list[dict], key: str) -> tuple[float, float]:
    """`tenth_means` of one metric over the logged steps (GRPO reward rising, SFT loss falling).

    >>> first_last_tenth([{"step": i, "reward": i / 10} for i in range(1, 21)], "reward")
    (0.15, 1.95)
    """
    values = [float(r[key]) for r in rows if r.get(key) is not None]
    if not values:
        raise ValueError(f"no {key!r} values in {len(rows)} metric rows")
    return tenth_means(values)


def predictions_name(checkpoint: str, split: str = "test", audio: str = "real") -> str:
    """The file a sweep writes a checkpoint's predictions on one split to, in the run's `eval/`
    folder: CKPT.SPLIT.json, or CKPT.SPLIT.audio-<choice>.json with the audio ablated.

    >>> predictions_name("checkpoint-60"), predictions_name("checkpoint-60", audio="silence")
    ('checkpoint-60.test.json', 'checkpoint-60.test.audio-silence.json')
    """
    return f"{checkpoint}.{split}" + ("" if audio == "real" else f".audio-{audio}") + ".json"


def chosen_on_validation(run_dir: str | Path) -> dict | None:
    """The checkpoint a run's sweep chose on validation (its `best_on_validation` selection:
    checkpoint, step, test and validation accuracy), or None when there is no sweep or no choice."""
    if not (Path(run_dir) / SWEEP_FILE).is_file():
        return None
    return read_sweep(run_dir)["selection"].get("best_on_validation")


def read_sweep(run_dir: str | Path) -> dict:
    """`RUN/eval/sweep.json` as `python -m aqa_core sweep` writes it."""
    path = Path(run_dir) / SWEEP_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no sweep (run `python -m aqa_core sweep --run {run_dir} ...`)")
    return json.loads(path.read_text(encoding="utf-8"))


@contextlib.contextmanager
def run_folder_lock(run_dir: str | Path) -> Iterator[None]:
    """One training process per run folder (`aqa_core.files.hold_output`); in a multi-process
    launch rank 0 holds it for all ranks (the others share its folder by design)."""
    if not is_main_process():
        yield
        return
    with hold_output(run_dir):
        yield
