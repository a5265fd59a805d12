"""Audio loading as R1-AQA does it: channel 0 of the file, 16 kHz, float32.

Reads with soundfile and resamples with soxr (`datasets` 5.x cannot decode audio offline).
A missing, unreadable, empty or silent file is an `AudioError` that names the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16_000


class AudioError(ValueError):
    """A wav that cannot be used: the message names the file and what is wrong."""


def load_audio(path: str | Path, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Return channel 0 of `path` as float32 at `sr` Hz (the official code keeps channel 0 only)."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"{path}: unreadable audio ({exc})") from exc
    if data.shape[0] == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    wav = np.ascontiguousarray(data[:, 0])
    if not np.any(wav):
        raise AudioError(f"{path}: silent audio (all {wav.shape[0]} samples are zero)")
    if file_sr != sr:
        import soxr

        wav = soxr.resample(wav, file_sr, sr).astype(np.float32)
    return wav


def check_audio_files(paths: Iterable[str | Path], decode: bool = False,
                      progress: bool = False) -> list[tuple[str, str]]:
    """(path, problem) for every distinct path that `load_audio` would reject: the one audio
    check, run before any model work. By default it reads headers only (missing, unreadable,
    empty: training's check); `decode=True` decodes every file with `load_audio`, which also
    catches silent files (evaluation's check)."""
    from tqdm.auto import tqdm

    problems = []
    for p in tqdm(list(dict.fromkeys(map(str, paths))), desc="checking audio", unit="file", disable=not progress):
        if decode:
            try:
                load_audio(p)
            except AudioError as exc:
                problems.append((p, str(exc).removeprefix(f"{p}: ")))
            continue
        if not Path(p).is_file():
            problems.append((p, "not found"))
            continue
        try:
            info = sf.info(p)
        except (sf.LibsndfileError, RuntimeError) as exc:
            problems.append((p, f"unreadable ({exc})"))
            continue
        if info.frames == 0:
            problems.append((p, "empty"))
    return problems
