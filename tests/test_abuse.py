"""The abuse suite (issue #13): every subcommand against a catalogue of bad inputs and
interruptions, as a user meets them by accident. For each case, through `python -m aqa_core`'s
entry point in-process: the exit code, exactly one message line naming the culprit, no
"Traceback" on stderr, every input file byte-identical afterwards, and no partial output (only
lock files, or the resumable progress a case names). Faults are injected deterministically: a
full disk is `os.replace` raising ENOSPC, Ctrl-C is a KeyboardInterrupt raised from inside the
training step or the generation loop.

    AQA_ABUSE_TABLE=/tmp/abuse.md python -m pytest tests/test_abuse.py   # also writes the catalogue's table
"""
from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from aqa_core import __main__ as entry

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- inputs


@pytest.fixture(scope="session")
def assets(tmp_path_factory, tiny_run_inputs) -> Path:
    """A tiny model, a tiny mini benchmark and an AVQA question file with its wavs: the inputs
    every case copies before it breaks something."""
    root = tmp_path_factory.mktemp("abuse-assets")
    tiny_run_inputs(root)
    (root / "avqa-wavs").mkdir()
    sf.write(root / "avqa-wavs" / "abc_10.wav", np.full(8000, 0.1, dtype=np.float32), 16000)
    (root / "avqa.json").write_text(json.dumps([{"id": 1, "video_name": "abc_10", "question_text": "What sounds?",
                                                 "multi_choice": ["a bird", "a car"], "answer": 0}]))
    return root


def _break_json(path: Path, text: str = "{not json") -> Callable[[Path], None]:
    return lambda root: (root / path).write_text(text)


def _truncate(path: Path, keep: int = 1000) -> Callable[[Path], None]:
    def run(root: Path) -> None:
        data = (root / path).read_bytes()
        (root / path).write_bytes(data[:keep])
    return run


def _silence_first_test_wav(root: Path) -> None:
    rec = json.loads((root / "data" / "test-mini.json").read_text())[0]
    sf.write(root / "data" / rec["audio_id"], np.zeros(16000, dtype=np.float32), 16000)


def _silence_first_train_wav(root: Path) -> None:
    rec = json.loads((root / "data" / "train.jsonl").read_text().splitlines()[0])
    sf.write(root / "data" / "train-audios" / rec["audio_path"], np.zeros(16000, dtype=np.float32), 16000)


def _nan_in_first_train_wav(root: Path) -> None:
    """A float wav with a NaN sample: it passed the silence test (NaN < threshold is False) and turned
    every trainable tensor of an SFT run into NaN."""
    rec = json.loads((root / "data" / "train.jsonl").read_text().splitlines()[0])
    wav = np.full(16000, 0.1, dtype=np.float32)
    wav[100] = np.nan
    sf.write(root / "data" / "train-audios" / rec["audio_path"], wav, 16000, subtype="FLOAT")


def _inf_in_first_test_wav(root: Path) -> None:
    rec = json.loads((root / "data" / "test-mini.json").read_text())[0]
    wav = np.full(16000, 0.1, dtype=np.float32)
    wav[0] = np.inf
    sf.write(root / "data" / rec["audio_id"], wav, 16000, subtype="FLOAT")


def _null_question_text(root: Path) -> None:
    lines = (root / "data" / "train.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["question_text"] = None
    (root / "data" / "train.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")


def _bad_avqa_record(root: Path) -> None:
    recs = json.loads((root / "avqa.json").read_text())
    (root / "avqa.json").write_text(json.dumps([*recs, {**recs[0], "id": 2, "answer": 5}]))


def _silent_avqa_wav(root: Path) -> None:
    sf.write(root / "avqa-wavs" / "abc_10.wav", np.zeros(8000, dtype=np.float32), 16000)


def _nan_avqa_wav(root: Path) -> None:
    sf.write(root / "avqa-wavs" / "abc_10.wav", np.full(8000, np.nan, dtype=np.float32), 16000, subtype="FLOAT")


# ----------------------------------------------------------------------------- faults


def _full_disk(monkeypatch) -> None:
    def replace(src, dst):  # os.replace's signature
        raise OSError(errno.ENOSPC, "No space left on device", str(dst))
    monkeypatch.setattr(os, "replace", replace)


def _ctrl_c_in_training(monkeypatch) -> None:
    import transformers

    def step(self, *a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(transformers.Trainer, "training_step", step)


def _ctrl_c_in_generation(monkeypatch) -> None:
    from aqa_core.eval import evaluate as ev

    def generate(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(ev, "_generate", generate)


# ----------------------------------------------------------------------------- the catalogue

SFT = ["sft", "--recipe", "{repo}/recipes/sft/mini-full.yaml", "--set", "model_name_or_path={in}/model",
       "--set", "train_data={in}/data/train.jsonl", "--set", "train_audio_dir={in}/data/train-audios",
       "--set", "output_dir={out}/run", "--set", "max_steps=2", "--set", "save_steps=1"]
GRPO = ["grpo", "--recipe", "{repo}/recipes/grpo/mini.yaml", "--set", "model_name_or_path={in}/model",
        "--set", "train_data={in}/data/train.jsonl", "--set", "train_audio_dir={in}/data/train-audios",
        "--set", "output_dir={out}/run"]
EVAL = ["evaluate", "--model", "{in}/model", "--data", "{in}/data/test-mini.json", "--audio-dir", "{in}/data",
        "--out", "{out}/pred.json", "--batch-size", "2", "--max-new-tokens", "2"]
CONVERT = ["avqa-convert", "{in}/avqa.json", "--audio-dir", "{in}/avqa-wavs", "--out", "{out}/avqa.jsonl"]
STUDY = ["study", "--out", "{out}/mini", "--book", "{out}/book", "--seeds", "1"]


@dataclass
class Case:
    id: str
    argv: list[str]
    code: int
    words: str  # in the one message line
    setup: Callable[[Path], None] | None = None
    fault: Callable | None = None
    hold: str | None = None  # an output path (with placeholders) another process holds
    progress: list[str] = field(default_factory=list)  # globs under {out} that may remain: resumable progress


CASES = [
    # avqa-convert
    Case("convert: --out is the input", [*CONVERT[:4], "--out", "{in}/avqa.json"], 2, "input question file"),
    Case("convert: a bad record", CONVERT, 2, "record 1 (id 2)", setup=_bad_avqa_record),
    Case("convert: a silent wav, --strict", [*CONVERT, "--strict"], 2, "silent audio", setup=_silent_avqa_wav),
    Case("convert: a NaN wav, --strict", [*CONVERT, "--strict"], 2, "non-finite audio", setup=_nan_avqa_wav),
    Case("convert: full disk", CONVERT, 2, "No space left on device", fault=_full_disk),
    # evaluate
    Case("evaluate: --out is --data", [*EVAL[:7], "--out", "{in}/data/test-mini.json", "--overwrite"], 1,
         "would overwrite the question file"),
    Case("evaluate: negative --limit", [*EVAL, "--limit", "-3"], 1, "--limit must be >= 1"),
    Case("evaluate: no model folder", [*EVAL[:2], "{in}/nope", *EVAL[3:]], 1, "not a model folder"),
    Case("evaluate: broken config.json", EVAL, 1, "config.json: not valid JSON",
         setup=_break_json(Path("model/config.json"))),
    Case("evaluate: truncated weights", EVAL, 1, "model.safetensors: truncated",
         setup=_truncate(Path("model/model.safetensors"))),
    Case("evaluate: a silent wav", EVAL, 1, "silent audio", setup=_silence_first_test_wav),
    Case("evaluate: an infinite sample in a wav", EVAL, 1, "non-finite audio", setup=_inf_in_first_test_wav),
    Case("evaluate: questions not JSON", EVAL, 1, "test-mini.json", setup=_break_json(Path("data/test-mini.json"))),
    Case("evaluate: --out under a file", [*EVAL[:7], "--out", "{in}/avqa.json/pred.json"], 2, "File exists"),
    Case("evaluate: another evaluation holds --out", EVAL, 1, "in use by pid", hold="{out}/pred.json"),
    Case("evaluate: full disk", EVAL, 2, "No space left on device", fault=_full_disk,
         progress=["pred.json.progress.jsonl"]),
    Case("evaluate: Ctrl-C while generating", EVAL, 130, "interrupted", fault=_ctrl_c_in_generation,
         progress=["pred.json.progress.jsonl"]),
    # sft
    Case("sft: no such recipe", ["sft", "--recipe", "{in}/nope.yaml"], 2, "nope.yaml"),
    Case("sft: an unknown key", [*SFT, "--set", "learning_rat=1"], 2, "unknown key 'learning_rat'"),
    Case("sft: a negative learning rate", [*SFT, "--set", "learning_rate=-1"], 2, "learning_rate must be > 0"),
    Case("sft: a bad keep_optimizer_state", [*SFT, "--set", "keep_optimizer_state=some"], 2,
         "keep_optimizer_state must be one of"),
    Case("sft: question_text null", SFT, 2, "'question_text' must be a non-empty string", setup=_null_question_text,
         progress=["run/config.yaml"]),
    Case("sft: a silent training wav", SFT, 2, "silent audio", setup=_silence_first_train_wav,
         progress=["run/config.yaml"]),
    Case("sft: a NaN sample in a training wav", SFT, 2, "non-finite audio", setup=_nan_in_first_train_wav,
         progress=["run/config.yaml"]),
    Case("grpo: a NaN sample in a training wav", GRPO, 2, "non-finite audio", setup=_nan_in_first_train_wav,
         progress=["run/config.yaml"]),
    Case("sft: truncated weights", SFT, 2, "model.safetensors: truncated",
         setup=_truncate(Path("model/model.safetensors")), progress=["run/config.yaml"]),
    Case("sft: --resume with nothing to resume", [*SFT, "--resume"], 2, "no complete checkpoint-N"),
    Case("sft: another run holds the folder", SFT, 2, "in use by pid", hold="{out}/run"),
    Case("sft: Ctrl-C while training", SFT, 130, "interrupted", fault=_ctrl_c_in_training, progress=["run/*"]),
    # grpo
    Case("grpo: num_generations does not divide the batch", [*GRPO, "--set", "num_generations=3"], 2,
         "divisible by num_generations"),
    Case("grpo: an unknown optimizer", [*GRPO, "--set", "optim=nope"], 2, "nope is not a valid OptimizerNames"),
    Case("grpo: max_completion_length 0", [*GRPO, "--set", "max_completion_length=0"], 2,
         "max_completion_length must be >= 1"),
    Case("grpo: a negative beta", [*GRPO, "--set", "beta=-0.1"], 2, "beta must be >= 0"),
    Case("grpo: max_steps 0", [*GRPO, "--set", "max_steps=0"], 2, "max_steps must be > 0"),
    Case("grpo: broken config.json", GRPO, 2, "config.json: not valid JSON",
         setup=_break_json(Path("model/config.json")), progress=["run/config.yaml"]),
    # tower-cache
    Case("tower-cache: --out is a --data file",
         ["tower-cache", "--model", "{in}/model", "--data", "{in}/data/train.jsonl",
          "--audio-dir", "{in}/data/train-audios", "--out", "{in}/data/train.jsonl"],
         2, "--out is the input question file"),
    # study
    Case("study: no such recipe", [*STUDY, "--grpo-recipe", "{in}/nope.yaml"], 2, "recipe file not found"),
    Case("study: another study holds the folder", STUDY, 2, "in use by pid", hold="{out}/mini"),
    # score
    Case("score: no such file", ["score", "{in}/nope.json"], 1, "no such file"),
    Case("score: not JSON", ["score", "{in}/avqa.json"], 1, "avqa.json",
         setup=_break_json(Path("avqa.json"), "[{")),
]


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


_BAR = re.compile(r"^.*\d+%\|[^|]*\|[^\]]*\]")  # a tqdm progress bar, up to its closing bracket


def _message_lines(stderr: str) -> list[str]:
    """stderr without its progress bars (tqdm redraws with carriage returns; the last redraw may
    share a line with the message) and blank lines."""
    lines = []
    for ln in stderr.split("\n"):
        ln = _BAR.sub("", ln.split("\r")[-1]).strip()
        if ln:
            lines.append(ln)
    return lines


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_abuse(case: Case, assets, tmp_path, capsys, monkeypatch):
    from aqa_core.files import hold_output

    inp, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(assets, inp)
    out.mkdir()
    if case.setup:
        case.setup(inp)
    before = _files(inp)
    argv = [a.replace("{in}", str(inp)).replace("{out}", str(out)).replace("{repo}", str(ROOT)) for a in case.argv]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AQA_DEBUG", raising=False)
    if case.fault:
        case.fault(monkeypatch)
    if case.hold:
        with hold_output(case.hold.replace("{out}", str(out))):
            code = entry.main(argv)
    else:
        code = entry.main(argv)
    monkeypatch.undo()
    err = capsys.readouterr().err
    lines = _message_lines(err)
    _record(case, code, [ln.replace(str(inp), "{in}").replace(str(out), "{out}") for ln in lines])
    assert "Traceback" not in err, err
    assert code == case.code, err
    assert len(lines) == 1 and case.words in lines[0], err
    assert _files(inp) == before, "an input file changed"
    left = [p for p in _files(out) if not fnmatch.fnmatch(Path(p).name, ".*.lock")]
    assert all(any(fnmatch.fnmatch(p, g) for g in case.progress) for p in left), f"partial output: {left}"


def _record(case: Case, code: int, lines: list[str]) -> None:
    """With AQA_ABUSE_TABLE set, append the case's row (what the closing note quotes)."""
    path = os.environ.get("AQA_ABUSE_TABLE")
    if not path:
        return
    msg = (lines[0] if lines else "").replace("|", "\\|")
    msg = msg if len(msg) <= 150 else msg[:147] + "..."
    shown = " ".join(a for a in case.argv[:2])
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"| {case.id} | `{shown} ...` | {code} | {msg} |\n")
