"""Run folders: the one layout every training run writes and every later stage reads. Torch-free,
so notebook kernels, the sweep and the study read runs without importing transformers.

    RUN/config.yaml           the resolved recipe (every field, defaults included)
    RUN/trainer_args.json     the GRPOConfig / SFTConfig actually used (`args.to_dict()`, latest launch)
    RUN/provenance.json       every launch (the first, then each --resume): command, git commit,
                              package versions, world size, host, time
    RUN/metrics.jsonl         one JSON object per logging step, then a `"summary": true` row
    RUN/checkpoint-N/         what the HF Trainer saves (LoRA runs add `merged/`, a plain model)
    RUN/final/                the model at the end, a plain model folder (`final/adapter/` for LoRA)
    RUN/eval/sweep.json       every checkpoint scored (aqa_core.eval.sweep)

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

import enum
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from .config import save_config, to_dict
from .data import iter_jsonl
from .files import write_atomic

CONFIG_FILE = "config.yaml"
TRAINER_ARGS_FILE = "trainer_args.json"
PROVENANCE_FILE = "provenance.json"
METRICS_FILE = "metrics.jsonl"
FINAL_DIR = "final"  # the model at the end of a run, always a plain model folder
MERGED_DIR = "merged"  # checkpoint-N/merged/: a LoRA checkpoint as a plain model folder
SWEEP_FILE = Path("eval") / "sweep.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")

#: Keys that may change between an interrupted run and its resumption (extending a run, or
#: checkpointing/logging more often, does not change what was trained so far).
RESUMABLE_CHANGES = frozenset({"max_steps", "save_steps", "logging_steps", "output_dir", "save_total_limit"})
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


def last_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint folder of a run (the one `--resume` continues from), or None.
    Our own rather than transformers' `get_last_checkpoint`: the reliability work adds a
    completeness check (a half-written save is not a checkpoint) that the library lacks."""
    found = checkpoints(run_dir)
    return found[-1] if found else None


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
        if last_checkpoint(run_dir) is None:
            raise RunDirError(f"{run_dir}: --resume given but the folder has no checkpoint-N to resume from")
        saved_path = run_dir / CONFIG_FILE
        if saved_path.is_file():
            saved = yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {}
            now = to_dict(cfg)
            defaults = to_dict(type(cfg)())
            saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
            differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k) and k not in RESUMABLE_CHANGES)
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


def _git_commit(repo: Path) -> dict[str, Any] | None:
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
    if top is None or Path(top).resolve() != repo.resolve() or git("ls-files", "aqa_core/__init__.py") != "aqa_core/__init__.py":
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
            "git": _git_commit(Path(__file__).resolve().parents[1]), "packages": versions,
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


def read_sweep(run_dir: str | Path) -> dict:
    """`RUN/eval/sweep.json` as `python -m aqa_core sweep` writes it."""
    path = Path(run_dir) / SWEEP_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no sweep (run `python -m aqa_core sweep --run {run_dir} ...`)")
    return json.loads(path.read_text(encoding="utf-8"))
