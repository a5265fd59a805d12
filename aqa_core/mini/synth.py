"""Sound, music and speech synthesis for the mini benchmark, and the signal checks that prove
an answer is in the audio. numpy for tones, sweeps, noise, clicks and instrument-like timbres
(additive synthesis); espeak-ng (the library `espeakng-loader` ships) through ctypes for speech.

Every generator is a pure function of its arguments and a `numpy.random.Generator`, so the
benchmark is byte-for-byte reproducible. All audio is float32, mono, `SR` = 16 kHz.

>>> x = beeps([0.2, 1.0, 1.8], dur=0.15, freq=1000.0)
>>> count_onsets(x)
3
>>> sweep_direction(sweep(300.0, 2400.0, 2.0))
'rising'
"""
from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SR = 16_000
CLIP_SECONDS = 3.0
CLIP = int(SR * CLIP_SECONDS)

# ---------------------------------------------------------------- building blocks


def _t(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / SR


def ramp(n: int, attack: float = 0.005, release: float = 0.005) -> np.ndarray:
    """Linear attack/release envelope of n samples (avoids clicks at note edges)."""
    env = np.ones(n)
    a, r = min(int(attack * SR), n // 2), min(int(release * SR), n // 2)
    if a:
        env[:a] = np.linspace(0.0, 1.0, a, endpoint=False)
    if r:
        env[n - r:] = np.linspace(1.0, 0.0, r)
    return env


def place(clip: np.ndarray, x: np.ndarray, start: float) -> np.ndarray:
    """Add `x` into `clip` from `start` seconds, cut at the clip's end."""
    i = int(round(start * SR))
    j = min(len(clip), i + len(x))
    if j > i:
        clip[i:j] += x[: j - i]
    return clip


def silence(seconds: float = CLIP_SECONDS) -> np.ndarray:
    return np.zeros(int(round(seconds * SR)))


def tone(freq: float, dur: float, attack: float = 0.005, release: float = 0.005) -> np.ndarray:
    """A pure sine tone with short ramps."""
    n = int(dur * SR)
    return np.sin(2 * np.pi * freq * _t(n)) * ramp(n, attack, release)


def beeps(starts: list[float], dur: float, freq: float, total: float = CLIP_SECONDS) -> np.ndarray:
    """Equal sine beeps starting at `starts` (seconds) in a silent clip."""
    clip = silence(total)
    for s in starts:
        place(clip, tone(freq, dur), s)
    return clip


def sweep(f0: float, f1: float, dur: float) -> np.ndarray:
    """A log-frequency (exponential) chirp from f0 to f1 Hz."""
    n = int(dur * SR)
    t = _t(n)
    k = np.log(f1 / f0) / dur
    phase = 2 * np.pi * f0 * (np.expm1(k * t) / k)
    return np.sin(phase) * ramp(n, 0.02, 0.02)


def noise_burst(dur: float, rng: np.random.Generator, smooth: int = 1) -> np.ndarray:
    """White noise (or low-passed by a moving average of `smooth` samples) with soft edges."""
    n = int(dur * SR)
    x = rng.standard_normal(n + smooth - 1)
    if smooth > 1:
        x = np.convolve(x, np.ones(smooth) / smooth, mode="valid")
    x = x / (np.std(x) + 1e-12)
    return x * ramp(n, 0.01, 0.03)


def click_train(rate: float, dur: float, rng: np.random.Generator) -> np.ndarray:
    """Short decaying noise clicks (3 ms) at `rate` per second for `dur` seconds."""
    out = np.zeros(int(dur * SR))
    m = int(0.003 * SR)
    click = rng.standard_normal(m) * np.exp(-np.arange(m) / (0.0008 * SR))
    for s in np.arange(0.0, dur - 0.004, 1.0 / rate):
        place(out, click, s)
    return out


# Instrument-like timbres by additive synthesis: (harmonic amplitudes, vibrato depth, attack s,
# per-harmonic decay rate or None for a sustained note). Not real instruments: "flute" is a
# near-pure tone, "violin" a bright sawtooth-like spectrum with vibrato, "guitar" a plucked,
# decaying tone whose upper harmonics die first, "organ" a steady set of low harmonics.
TIMBRES = {
    "flute": ((1.0, 0.12, 0.04), 0.004, 0.06, None),
    "violin": (tuple(1.0 / k for k in range(1, 16)), 0.008, 0.08, None),
    "guitar": (tuple(1.0 / k**1.2 for k in range(1, 12)), 0.0, 0.003, 3.0),
    "organ": ((1.0, 0.6, 0.4, 0.25, 0.15), 0.0, 0.02, None),
}


def midi_hz(note: float) -> float:
    return 440.0 * 2.0 ** ((note - 69) / 12)


def note(freq: float, dur: float, timbre: str = "flute") -> np.ndarray:
    """One note of `timbre` (see TIMBRES), normalised to unit peak."""
    amps, vib, attack, decay = TIMBRES[timbre]
    n = int(dur * SR)
    t = _t(n)
    # vibrato as a phase modulation at 5.5 Hz, depth a fraction of the frequency
    phase = 2 * np.pi * freq * t + (vib * freq / 5.5) * np.sin(2 * np.pi * 5.5 * t)
    # sin(k*phase) by the recurrence s_k = 2 cos(phase) s_(k-1) - s_(k-2): ~5x faster than np.sin
    two_cos, prev, cur = 2 * np.cos(phase), np.zeros(n), np.sin(phase)
    x = np.zeros(n)
    if decay is not None:
        base, step = np.exp(-t * decay), np.exp(-t * decay * 0.6)
    for k, a in enumerate(amps, start=1):
        if k * freq >= SR / 2 - 500:
            break
        if decay is None:
            x += a * cur
        else:
            x += a * cur * base
            base = base * step
        prev, cur = cur, two_cos * cur - prev
    x *= ramp(n, attack, 0.03)
    return x / (np.max(np.abs(x)) + 1e-12)


def chord(root_midi: int, quality: str, dur: float, timbre: str, arpeggio: float = 0.0) -> np.ndarray:
    """A major or minor triad; `arpeggio` > 0 staggers the notes by that many seconds."""
    third = {"major": 4, "minor": 3}[quality]
    out = np.zeros(int(dur * SR))
    for i, step in enumerate((0, third, 7)):
        start = i * arpeggio
        place(out, note(midi_hz(root_midi + step), dur - start, timbre), start)
    return out


# ---------------------------------------------------------------- everyday sound sources
# Six sources a listener names by their sound (the AVQA-like "what makes the sound" questions),
# each a pure function of its parameters (and `rng` for the random ones). Not recordings: what
# matters is that each has a cue a listener can use in every regime (chirps, a wailing pitch, a
# low buzz, inharmonic decaying partials, random droplets, a fast two-tone trill).
SOURCES = ("bird", "siren", "engine", "bell", "rain", "phone")


def bird(n: int, chirp: float, gap: float, f_hi: float, f_lo: float) -> np.ndarray:
    """`n` fast downward chirps (f_hi -> f_lo Hz, `chirp` s each, `gap` s apart)."""
    one = sweep(f_hi, f_lo, chirp)
    out = np.zeros(int(n * chirp * SR + (n - 1) * gap * SR) + 1)
    for i in range(n):
        place(out, one, i * (chirp + gap))
    return out


def siren(center: float, depth: float, rate: float, dur: float) -> np.ndarray:
    """A tone whose pitch wails up and down around `center` Hz (+-`depth`) `rate` times a second."""
    n = int(dur * SR)
    t = _t(n)
    phase = 2 * np.pi * center * t - (depth / rate) * np.cos(2 * np.pi * rate * t)
    return np.sin(phase) * ramp(n, 0.05, 0.05)


def engine(f0: float, flutter: float, dur: float) -> np.ndarray:
    """A low buzz: harmonics of `f0` Hz (1/k amplitudes) with a `flutter` Hz amplitude ripple."""
    n = int(dur * SR)
    t = _t(n)
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 25) if k * f0 < 4000)
    x = x * (1 + 0.4 * np.sin(2 * np.pi * flutter * t)) * ramp(n, 0.1, 0.1)
    return x / (np.max(np.abs(x)) + 1e-12)


BELL_PARTIALS = (1.0, 2.0, 2.76, 5.4, 8.93)  # a struck bell's inharmonic partials (ratios to the fundamental)


def bell(f0: float, strikes: int, decay: float, spacing: float = 0.9) -> np.ndarray:
    """`strikes` strokes of a bell at `f0` Hz, each decaying with time constant `decay` s."""
    n = int(min(CLIP_SECONDS, decay * 4) * SR)
    t = _t(n)
    one = sum(a * np.sin(2 * np.pi * r * f0 * t) * np.exp(-t / (decay / (1 + 0.6 * i)))
              for i, (r, a) in enumerate(zip(BELL_PARTIALS, (1.0, 0.6, 0.5, 0.35, 0.25), strict=True))
              if r * f0 < SR / 2 - 500)
    one = one * ramp(n, 0.002, 0.05) / (np.max(np.abs(one)) + 1e-12)
    out = np.zeros(int((strikes - 1) * spacing * SR) + n)
    for i in range(strikes):
        place(out, one, i * spacing)
    return out


def rain(density: float, dur: float, rng: np.random.Generator) -> np.ndarray:
    """Droplets: short decaying noise ticks at random times, `density` per second, over a soft hiss."""
    n = int(dur * SR)
    out = 0.05 * rng.standard_normal(n)
    m = int(0.004 * SR)
    for s in np.sort(rng.uniform(0, max(dur - 0.005, 0.01), int(density * dur))):
        place(out, rng.uniform(0.3, 1.0) * rng.standard_normal(m) * np.exp(-np.arange(m) / (0.0007 * SR)), float(s))
    return out * ramp(n, 0.05, 0.05)


def phone(f1: float, rate: float, burst: float, bursts: int, pause: float = 0.4) -> np.ndarray:
    """An electronic ring: `bursts` bursts of `burst` s, each a trill alternating between `f1` and
    1.25 x `f1` Hz `rate` times a second."""
    n = int(burst * SR)
    t = _t(n)
    freq = np.where(np.floor(t * rate) % 2 == 0, f1, 1.25 * f1)
    one = np.sin(2 * np.pi * np.cumsum(freq) / SR) * ramp(n, 0.01, 0.01)
    out = np.zeros(int(bursts * burst * SR + (bursts - 1) * pause * SR) + 1)
    for i in range(bursts):
        place(out, one, i * (burst + pause))
    return out


def mix_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white noise `snr_db` below the RMS of the whole clip `x`."""
    p = np.sqrt(np.mean(x**2)) + 1e-12
    return x + rng.standard_normal(len(x)) * p * 10 ** (-snr_db / 20)


def set_level(x: np.ndarray, rms_dbfs: float, peak: float = 0.95) -> np.ndarray:
    """Scale to an RMS level in dBFS, then down if the peak would clip; float32 out."""
    x = x * (10 ** (rms_dbfs / 20) / (np.sqrt(np.mean(x**2)) + 1e-12))
    m = np.max(np.abs(x))
    if m > peak:
        x = x * (peak / m)
    return x.astype(np.float32)


def fit(x: np.ndarray, n: int = CLIP) -> np.ndarray:
    """Pad with zeros or cut to exactly n samples."""
    return np.pad(x, (0, max(0, n - len(x))))[:n]


# ---------------------------------------------------------------- speech (espeak-ng via ctypes)

_ESPEAK: dict = {}
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _PITCH = 1, 3


def _espeak():
    """Load and initialise libespeak-ng once per process; the callback collects int16 chunks."""
    if not _ESPEAK:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({rate}); data path {espeakng_loader.get_data_path()}")
        chunks: list[np.ndarray] = []

        @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
        def on_audio(wav, n, events):
            if n > 0:
                chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        lib.espeak_SetSynthCallback(on_audio)
        _ESPEAK.update(lib=lib, rate=rate, chunks=chunks, callback=on_audio)  # keep the callback alive
    return _ESPEAK


def speak_here(text: str, voice: str, rate: int = 160, pitch: int = 50) -> np.ndarray:
    """Synthesise `text` in this process: float32 at SR, leading/trailing silence trimmed.

    espeak-ng is not reproducible by itself: some voices (the female variants) add noise from a
    random generator seeded differently in each process, which we seed before every utterance,
    and it keeps state between utterances (the same text comes out a few samples different
    depending on what was said before), so `speak` runs a whole batch in a fresh process to
    keep the benchmark byte-identical; use this directly only for experiments.
    """
    import soxr

    e = _espeak()
    lib, chunks = e["lib"], e["chunks"]
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise ValueError(f"espeak-ng has no voice {voice!r} (try 'en+m3', 'en+f3')")
    lib.espeak_SetParameter(_RATE, int(rate), 0)
    lib.espeak_SetParameter(_PITCH, int(pitch), 0)
    lib.espeak_ng_SetRandSeed(0)
    chunks.clear()
    data = text.encode() + b"\0"
    err = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
    if err != 0 or not chunks:
        raise RuntimeError(f"espeak_Synth failed (error {err}) for {text!r} in voice {voice!r}")
    x = np.concatenate(chunks).astype(np.float64) / 32768.0
    loud = np.flatnonzero(np.abs(x) > 0.01)
    x = x[loud[0]: loud[-1] + 1] if len(loud) else x
    return soxr.resample(x, e["rate"], SR).astype(np.float32)


def speak(specs: list[tuple[str, str, int, int]]) -> list[np.ndarray]:
    """Synthesise (text, voice, rate, pitch) specs in order, in a fresh Python process, so the
    result depends only on `specs` (see `speak_here`). About 3 ms per utterance plus ~0.3 s."""
    if not specs:
        return []
    with tempfile.TemporaryDirectory(prefix="aqa-speech-") as tmp:
        spec_file, out_file = Path(tmp) / "specs.json", Path(tmp) / "speech.npz"
        spec_file.write_text(json.dumps([list(s) for s in specs]))
        proc = subprocess.run([sys.executable, "-m", "aqa_core.mini.synth", str(spec_file), str(out_file)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"speech synthesis subprocess failed:\n{proc.stderr[-2000:]}")
        with np.load(out_file) as npz:
            return [npz[f"a{i}"] for i in range(len(specs))]


# ---------------------------------------------------------------- signal checks (used by tests)


def frame_db(x: np.ndarray, frame: float = 0.02, hop: float = 0.01) -> np.ndarray:
    """Frame energies in dB (20 ms frames, 10 ms hop)."""
    f, h = int(frame * SR), int(hop * SR)
    n = 1 + max(0, len(x) - f) // h
    idx = np.arange(f)[None, :] + h * np.arange(n)[:, None]
    return 10 * np.log10(np.mean(np.asarray(x, dtype=np.float64)[idx] ** 2, axis=1) + 1e-12)


def count_onsets(x: np.ndarray, min_gap: float = 0.05) -> int:
    """Count sound events: rising crossings of a threshold halfway (in dB) between the quiet
    floor and the loudest frame, merging crossings closer than `min_gap` seconds."""
    e = frame_db(x)
    thr = (np.percentile(e, 5) + e.max()) / 2
    on = e > thr
    starts = np.flatnonzero(on[1:] & ~on[:-1]) + 1
    if on[0]:
        starts = np.r_[0, starts]
    count, last = 0, -1e9
    for s in starts:
        if (s - last) * 0.01 >= min_gap:
            count += 1
        last = s
    return count


def rms_halves(x: np.ndarray) -> tuple[float, float]:
    """RMS of the first and the second half of a clip."""
    h = len(x) // 2
    return float(np.sqrt(np.mean(x[:h] ** 2))), float(np.sqrt(np.mean(x[h:] ** 2)))


def peak_freq_track(x: np.ndarray, frame: float = 0.1, hop: float = 0.02, floor_db: float = 10.0) -> np.ndarray:
    """Strongest frequency (Hz) of each frame within `floor_db` of the loudest frame
    (100 ms Hann frames zero-padded 4x: 2.5 Hz bins, enough for a semitone at 100 Hz)."""
    f, h = int(frame * SR), int(hop * SR)
    n = 1 + max(0, len(x) - f) // h
    idx = np.arange(f)[None, :] + h * np.arange(n)[:, None]
    frames = np.asarray(x, dtype=np.float64)[idx] * np.hanning(f)
    spec = np.abs(np.fft.rfft(frames, n=4 * f, axis=1))
    energy = 10 * np.log10(np.sum(spec**2, axis=1) + 1e-12)
    keep = energy > energy.max() - floor_db
    return np.fft.rfftfreq(4 * f, 1 / SR)[np.argmax(spec[keep], axis=1)]


def sweep_direction(x: np.ndarray) -> str:
    """'rising' or 'falling': the sign of the slope of log peak frequency over loud frames.
    Also tells a monotonic melody's direction (the note pitches rise or fall)."""
    track = np.log(np.maximum(peak_freq_track(x), 1.0))
    slope = np.polyfit(np.arange(len(track)), track, 1)[0]
    return "rising" if slope > 0 else "falling"


def median_f0(x: np.ndarray, fmin: float = 70.0, fmax: float = 350.0) -> float:
    """Median fundamental frequency (Hz) of voiced frames by autocorrelation; tells a low
    (male-like) voice from a high (female-like) one."""
    f, h = int(0.04 * SR), int(0.01 * SR)
    lo, hi = int(SR / fmax), int(SR / fmin)
    e = frame_db(x, 0.04, 0.01)
    f0s = []
    for i in np.flatnonzero(e > e.max() - 25):
        fr = np.asarray(x[i * h: i * h + f], dtype=np.float64)
        fr = fr - fr.mean()
        ac = np.correlate(fr, fr, mode="full")[f - 1:]
        if ac[0] <= 0:
            continue
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] / ac[0] > 0.4:
            f0s.append(SR / lag)
    return float(np.median(f0s)) if f0s else 0.0


def _speech_worker(spec_file: str, out_file: str) -> None:
    specs = json.loads(Path(spec_file).read_text())
    arrays = {f"a{i}": speak_here(t, v, int(r), int(p)) for i, (t, v, r, p) in enumerate(specs)}
    np.savez(out_file, **arrays)


if __name__ == "__main__":  # the fresh process behind `speak`
    _speech_worker(sys.argv[1], sys.argv[2])
