"""Audio loading as R1-AQA does it: channel 0 of the file, 16 kHz, float32; and the one audio check.

Reads with soundfile and resamples with soxr (`datasets` 5.x cannot decode audio offline).
A missing, unreadable, empty, too short, non-finite (NaN or Inf samples) or silent file is an
`AudioError` that names the file;
the thresholds are defined once here (`MIN_SECONDS`, `SILENT_PEAK`). `check_audio_files` applies
them to every wav before any model work (training, evaluation and `avqa-convert` call it) and
counts the clips longer than the model's window, of which the model hears only the start.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16_000
#: A clip shorter than this is unusable ("too short"): not one Whisper frame of sound to hear.
MIN_SECONDS = 0.1
#: A clip whose peak |amplitude| (full scale 1.0) stays below this is silent: -80 dBFS, below
#: 16-bit dither; an all-zero file is the common case.
SILENT_PEAK = 1e-4
#: The audio check's version: a cache of its verdicts keys on it (2: non-finite samples refused).
CHECK_VERSION = 2
#: Qwen2-Audio's window (its Whisper feature extractor's 30 s): later audio is not heard.
WINDOW_SECONDS = 30.0


def whisper_feature_extractor(num_mel_bins: int = 128, seconds: float = WINDOW_SECONDS):
    """Qwen2-Audio's feature extractor: Whisper log-mel features (25 ms windows every 10 ms) over a
    `seconds` window, with the attention mask the model needs. The 7B model's: 128 mels, 30 s;
    the mini model's: 80 mels over its clip length."""
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=num_mel_bins, sampling_rate=SAMPLE_RATE, hop_length=160,
                                   chunk_length=seconds, n_fft=400, padding_value=0.0, return_attention_mask=True)


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
    if data.shape[0] < MIN_SECONDS * file_sr:
        raise AudioError(f"{path}: too short ({data.shape[0] / file_sr:.3f} s; at least {MIN_SECONDS} s needed)")
    wav = np.ascontiguousarray(data[:, 0])
    finite = np.isfinite(wav)
    if not finite.all():  # a float wav can hold NaN or Inf: never trained on, never scored as an answer
        nan = int(np.isnan(wav).sum())
        raise AudioError(f"{path}: non-finite audio ({nan} NaN and {int((~finite).sum()) - nan} infinite samples "
                         f"of {wav.shape[0]})")
    peak = float(np.max(np.abs(wav)))
    if peak < SILENT_PEAK:
        what = f"all {wav.shape[0]} samples are zero" if peak == 0 else f"peak {peak:.1e} < {SILENT_PEAK:.0e}"
        raise AudioError(f"{path}: silent audio ({what})")
    if file_sr != sr:
        import soxr

        wav = soxr.resample(wav, file_sr, sr).astype(np.float32)
    return wav


def model_window_seconds(model_dir: str | Path | None) -> float:
    """The audio window of a model folder (its feature extractor's n_samples / sampling_rate, from
    processor_config.json or preprocessor_config.json), else Qwen2-Audio's `WINDOW_SECONDS`."""
    import json

    for name in ("processor_config.json", "preprocessor_config.json"):
        path = Path(model_dir) / name if model_dir else None
        if path is None or not path.is_file():
            continue
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        fe = cfg.get("feature_extractor", cfg)
        if isinstance(fe, dict) and fe.get("n_samples") and fe.get("sampling_rate"):
            return float(fe["n_samples"]) / float(fe["sampling_rate"])
    return WINDOW_SECONDS


def check_audio_files(paths: Iterable[str | Path], progress: bool = False,
                      window_seconds: float | None = WINDOW_SECONDS,
                      durations: dict[str, float] | None = None) -> list[tuple[str, str]]:
    """(path, problem) for every distinct path that `load_audio` rejects (missing, unreadable,
    empty, too short, non-finite, silent): the one audio check, run on every wav before any model work. Every
    file is decoded once. Clips longer than `window_seconds` (the model's window; None: not
    checked) are usable, of which the model hears only the start: they are counted in one
    warning that names the first few. `durations`, when given, receives each usable file's
    length in seconds (the preflight's audio-token count)."""
    from tqdm.auto import tqdm

    problems, long_clips = [], []
    for p in tqdm(list(dict.fromkeys(map(str, paths))), desc="checking audio", unit="file", disable=not progress):
        try:
            wav = load_audio(p)
        except AudioError as exc:
            problems.append((p, str(exc).removeprefix(f"{p}: ")))
            continue
        if durations is not None:
            durations[p] = wav.shape[0] / SAMPLE_RATE
        if window_seconds is not None and wav.shape[0] > window_seconds * SAMPLE_RATE:
            long_clips.append(f"{p} ({wav.shape[0] / SAMPLE_RATE:.1f} s)")
    if long_clips:
        warnings.warn(f"{len(long_clips)} clip(s) longer than the model's {window_seconds:g} s window: only their "
                      f"first {window_seconds:g} s are heard (e.g. {', '.join(long_clips[:3])})", stacklevel=2)
    return problems
