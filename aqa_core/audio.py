"""Audio loading as R1-AQA does it: channel 0 of the file, 16 kHz, float32.

Reads with soundfile and resamples with soxr (`datasets` 5.x cannot decode audio offline).
A missing, unreadable, empty or silent file is an `AudioError` that names the file.
"""
from __future__ import annotations

from pathlib import Path

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


def check_audio_files(paths: list[str | Path]) -> list[tuple[str, str]]:
    """(path, problem) for every path that `load_audio` would reject, without decoding everything:
    existence and a header read; used to report missing audio before any model work starts."""
    problems = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            problems.append((str(p), "not found"))
            continue
        try:
            info = sf.info(str(p))
        except (sf.LibsndfileError, RuntimeError) as exc:
            problems.append((str(p), f"unreadable ({exc})"))
            continue
        if info.frames == 0:
            problems.append((str(p), "empty"))
    return problems
