"""The mini benchmark: synthetic 3 s audio-QA clips whose answers the generator knows, in the
paper's setting of a training set (AVQA's analogue) and an out-of-distribution test set
(MMAU test-mini's analogue), plus a corpus for the mini base model.

    python -m aqa_core mini-data --out data/mini [--seed 0] [--train 1200 ...] [--force]

The shift from `train` to `test-mini` mirrors AVQA -> MMAU (see `SHIFT` / `shift_table()`):
the test questions use a wording never seen in train or base; parameters come from other
ranges (softer loudness gaps, smaller pitch spans, other voices, more noise, other registers);
two sub-categories (sound-effect type, instrument) never occur in train, only in the base
corpus; and each test item has a difficulty (easy/medium/hard) from a points rule (`hard`).
`base` teaches captions, open answers and multiple choice (`<answer>` tags when asked) on the
train and base wordings only, so the base model can be above chance but not at the ceiling.

Layout of OUT: train.jsonl + train-audios/, validation.jsonl + validation-audios/ (R1-AQA
JSONL), test-mini.json + test-mini-audios/ (MMAU schema), base.jsonl + base-audios/,
params.jsonl (every clip's generating parameters), manifest.json (sizes, sha256 of every file,
timing). The same seed and sizes give byte-identical files.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from . import synth as S
from .prompts import Prompt, avqa_question, user_text

VERSION = "2"  # bump when the generated data changes
NUMS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = ("train", "validation", "test", "base")
SPLIT_CODE = {s: i for i, s in enumerate(SPLITS)}


@dataclass(frozen=True)
class MiniSizes:
    """Number of clips per split (defaults: well under a minute on 2 cores)."""

    train: int = 1200
    validation: int = 120
    test: int = 300
    base: int = 1500


@dataclass(frozen=True)
class SubCat:
    """One question type: its MMAU-style labels, choices, wordings per split and its shift."""

    key: str
    task: str  # sound | music | speech
    name: str  # MMAU-style sub-category
    category: str
    choices: tuple[str, ...]
    train_q: tuple[str, ...]  # empty: absent from train (test-only sub-category)
    base_q: tuple[str, ...]
    test_q: str  # the 4th wording, never in train or base
    shift: str  # train/base -> test parameters, for the book
    hard: str  # the difficulty points rule


SUBCATS = {s.key: s for s in [
    SubCat("beep_count", "sound", "Event Counting", "Reasoning", NUMS[1:5],
           ("How many beeps are there in the video?", "How many beeps can be heard?",
            "Count the beeps in the recording. How many are there?"),
           ("How many short tones are in this clip?", "What is the number of beeps?"),
           "Based on the given audio, how many distinct beep sounds occur?",
           "beeps 700-1200 Hz, 0.10-0.18 s, gaps 0.25-0.45 s -> 400-650 or 1300-2000 Hz, 0.06-0.14 s, gaps 0.12-0.35 s",
           "+1 count >= 3, +1 gap < 0.2 s, +1 SNR < 18 dB"),
    SubCat("louder", "sound", "Loudness Comparison", "Reasoning", ("the first tone", "the second tone"),
           ("Which tone is louder in the video?", "Which of the two tones is louder?",
            "Is the first or the second tone louder?"),
           ("Which tone has more volume?", "Which beep is played louder?"),
           "Comparing the two tones in the audio, which one has the higher loudness?",
           "same pitch 440-880 Hz, gap 8-14 dB -> two pitches 300-1500 Hz, gap 3-10 dB",
           "+1 gap < 6 dB, +1 gap < 4.5 dB, +1 SNR < 18 dB"),
    SubCat("sweep", "sound", "Pitch Sweep Direction", "Information Extraction", ("rising", "falling"),
           ("Does the pitch of the sound in the video rise or fall?", "Is the sweep rising or falling?",
            "In which direction does the pitch move?"),
           ("Is the tone going up or down in pitch?", "Which way does the frequency glide?"),
           "What is the direction of the frequency change in the given audio?",
           "1.5-3 octaves from 200-500 Hz, 1.5-2.5 s -> 0.6-1.5 octaves from 150-1200 Hz, 0.8-2 s",
           "+1 span < 1 octave, +1 duration < 1.2 s, +1 SNR < 18 dB"),
    SubCat("sound_type", "sound", "Sound Effect Type", "Information Extraction",
           ("noise burst", "steady tone", "click train"), (),
           ("What kind of sound is this?", "Which type of sound effect is heard?"),
           "Which sound event best describes what occurs in the audio?",
           "absent from train; base: white noise, 300-1500 Hz tone, 8-20 clicks/s -> "
           "low-passed noise, organ-like tone, 4-30 clicks/s, shorter",
           "+1 duration < 0.5 s, +1 odd variant (dull noise, click rate < 6 or > 25/s), +1 SNR < 18 dB"),
    SubCat("melody", "music", "Melody Direction", "Reasoning", ("up", "down"),
           ("Does the melody in the video go up or down?", "Is the melody going up or down?",
            "Which direction does the tune move?"),
           ("Are the notes climbing or falling?", "Does the sequence of notes rise or fall?"),
           "Identify the overall contour of the melodic line in this audio.",
           "4 notes of 0.45 s, steps 2-4 semitones, from MIDI 60-67, flute/organ (base: any timbre) -> "
           "3-5 notes of 0.3-0.55 s, steps 1-3, from MIDI 45-55 or 72-80, flute/violin/guitar",
           "+1 a 1-semitone step, +1 only 3 notes, +1 SNR < 18 dB"),
    SubCat("chord", "music", "Chord Quality", "Information Extraction", ("major", "minor"),
           ("Is the chord played in the video major or minor?", "What is the quality of the chord?",
            "Is this chord major or minor?"),
           ("Does the chord sound major or minor?", "Which chord type is played?"),
           "Based on the harmony in the audio, what is the chord quality?",
           "block organ chord (base: any timbre), root MIDI 55-67, 1.5-2.5 s -> root 48-72, "
           "guitar/violin/flute, 1-2.5 s, half of them arpeggiated",
           "+1 root < 52 or > 68, +1 duration < 1.5 s, +1 SNR < 18 dB"),
    SubCat("tempo", "music", "Tempo", "Information Extraction", ("fast", "slow"),
           ("Is the rhythm in the video fast or slow?", "What is the tempo of the beat?",
            "Is the pulse fast or slow?"),
           ("How fast is the beat?", "Is the pace of the notes quick or slow?"),
           "How would you describe the tempo of the music in the audio?",
           "woodblock clicks, fast 160-220 / slow 50-80 BPM -> plucked notes or clicks, fast 125-180 / slow 60-100 BPM",
           "+1 within 25 BPM of 112, +1 plucked notes, +1 SNR < 18 dB"),
    SubCat("instrument", "music", "Instrument Identification", "Information Extraction",
           ("flute", "violin", "guitar"), (),
           ("Which instrument is playing?", "What instrument does this sound like?"),
           "Based on the timbre, which instrument is most likely heard in the audio?",
           "absent from train; base: 1-3 notes MIDI 57-76, 0.6-1.2 s -> 2-4 notes MIDI 50-84, 0.3-0.8 s",
           "+1 a note below 55 or above 79, +1 notes < 0.4 s, +1 SNR < 18 dB"),
    SubCat("digit", "speech", "Spoken Digit", "Information Extraction", NUMS,
           ("What is the number spoken in the video?", "Which number does the speaker say?",
            "What digit is said?"),
           ("What number is mentioned?", "Which digit can you hear?"),
           "Based on the given audio, which number does the voice announce?",
           "'The number is N.', voices en+m1/m3/f1/f3, 150-170 wpm -> 'My/Your number is N.', "
           "voices en+m2/m7/f2/f4, 130-200 wpm, pitch 35-65",
           "+1 rate >= 180, +1 pitch not 50, +1 SNR < 18 dB"),
    SubCat("speaker", "speech", "Speaker Gender", "Reasoning", ("male", "female"),
           ("Is the person speaking in the video male or female?", "Is the speaker male or female?",
            "What is the gender of the voice?"),
           ("Does a man or a woman speak?", "Who is talking, a male or a female voice?"),
           "Identify the likely gender of the speaker in this audio.",
           "voices en+m1/m3/f1/f3 at pitch 50 -> voices en+m2/m7/f2/f4, pitch 35-65, other sentences",
           "+2 pitch toward the other gender (male 65, female 35), +1 SNR < 18 dB"),
]}
TRAIN_SUBCATS = tuple(k for k, s in SUBCATS.items() if s.train_q)
TASKS = ("sound", "music", "speech")

CAPTION_PROMPTS = ("Describe the audio.", "What do you hear?", "Write a short caption for this sound.",
                   "Give a one-sentence description of the clip.")
TAG_TAILS = (" Output the final answer in <answer> </answer>.", " Put your answer in <answer> </answer>.",
             " Answer inside <answer> </answer>.")
# The base corpus also shows reasoning before the answer (an instruct model has seen such
# formats; without them prompt <3>'s format reward is never earned and GRPO has no signal for it):
# the "thinking" is the clip's caption, a description of what is heard.
THINK_TAILS = (" Output the thinking process in <think> </think> and final answer in <answer> </answer>.",
               " Describe what you hear in <think> </think>, then answer in <answer> </answer>.")
VOICES = {"train": {"male": ("en+m1", "en+m3"), "female": ("en+f1", "en+f3")},
          "test": {"male": ("en+m2", "en+m7"), "female": ("en+f2", "en+f4")}}
SENTENCES = {"train": ("Hello, how are you today?", "The weather is nice.", "Please close the window.",
                       "I like to read books.", "See you tomorrow morning."),
             "test": ("Where is the train station?", "Thank you for the help.", "It is getting late.",
                      "Let us meet at noon.", "The coffee is still hot.")}


COMMON_SHIFT = ("white noise at SNR 25-40 dB, RMS level -22 to -14 dBFS -> SNR 10-30 dB, level -28 to -10 dBFS; "
                "3 train wordings per question -> a 4th wording")


def shift_table() -> list[dict]:
    """A row for what every clip shares, then one per sub-category: where it occurs, the
    train -> test shift and the difficulty points rule (0 easy, 1 medium, 2+ hard)."""
    every = {"task": "all", "sub-category": "(every clip)", "in train": True, "in base": True,
             "in test-mini": True, "train/base -> test-mini": COMMON_SHIFT, "difficulty points": "see rows"}
    return [every] + [{"task": s.task, "sub-category": s.name, "in train": bool(s.train_q), "in base": True,
                       "in test-mini": True, "train/base -> test-mini": s.shift, "difficulty points": s.hard}
                      for s in SUBCATS.values()]


SHIFT = shift_table()

# ---------------------------------------------------------------- drawing parameters


def _u(rng: np.random.Generator, a: float, b: float, nd: int = 3) -> float:
    return round(float(rng.uniform(a, b)), nd)


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _draw(key: str, rng: np.random.Generator, regime: str) -> tuple[dict, str, str]:
    """Parameters, answer (choice text) and caption of one clip; `regime` is train|base|test."""
    test = regime == "test"
    p: dict[str, Any] = {"snr": _u(rng, 10, 30, 1) if test else _u(rng, 25, 40, 1),
                         "level": _u(rng, -28, -10, 1) if test else _u(rng, -22, -14, 1)}
    if key == "beep_count":
        n = int(rng.integers(1, 5))
        p.update(n=n, dur=_u(rng, .06, .14) if test else _u(rng, .10, .18),
                 gap=_u(rng, .12, .35) if test else _u(rng, .25, .45),
                 freq=(_u(rng, 400, 650, 1) if rng.random() < .5 else _u(rng, 1300, 2000, 1)) if test
                 else _u(rng, 700, 1200, 1))
        p["start"] = _u(rng, .1, 2.9 - n * p["dur"] - (n - 1) * p["gap"])
        pitch = "high" if p["freq"] > 1000 else "low"
        cap = f"A single short {pitch} beep." if n == 1 else f"{NUMS[n].capitalize()} short {pitch} beeps."
        return p, NUMS[n], cap
    if key == "louder":
        first = bool(rng.random() < .5)
        f1 = _u(rng, 300, 1500, 1) if test else _u(rng, 440, 880, 1)
        p.update(first_louder=first, gap_db=_u(rng, 3, 10, 2) if test else _u(rng, 8, 14, 2),
                 f1=f1, f2=_u(rng, 300, 1500, 1) if test else f1,
                 d1=_u(rng, .6, .9), d2=_u(rng, .6, .9), s1=_u(rng, .1, .4), s2=_u(rng, 1.6, 1.9))
        which = "first" if first else "second"
        return p, f"the {which} tone", f"Two tones; the {which} one is louder."
    if key == "sweep":
        up = bool(rng.random() < .5)
        span = _u(rng, .6, 1.5) if test else _u(rng, 1.5, 3.0)
        low = _u(rng, 150, 1200, 1) if test else _u(rng, 200, 500, 1)
        dur = _u(rng, .8, 2.0) if test else _u(rng, 1.5, 2.5)
        f0, f1 = (low, round(low * 2**span, 1)) if up else (round(low * 2**span, 1), low)
        p.update(f0=f0, f1=f1, span=span, dur=dur, start=_u(rng, .1, 2.9 - dur))
        return p, "rising" if up else "falling", f"A tone sweeping {'up' if up else 'down'} in pitch."
    if key == "sound_type":
        kind = _pick(rng, SUBCATS[key].choices)
        dur = _u(rng, .25, 1.0) if test else _u(rng, .5, 1.5)
        p.update(kind=kind, dur=dur, start=_u(rng, .1, 2.9 - dur),
                 smooth=int(rng.integers(4, 16)) if test else 1,
                 freq=_u(rng, 200, 1200, 1) if test else _u(rng, 300, 1500, 1),
                 timbre="organ" if test else "sine", rate=_u(rng, 4, 30, 1) if test else _u(rng, 8, 20, 1))
        cap = {"noise burst": "A burst of noise.", "steady tone": "A steady tone.",
               "click train": "A rapid train of clicks."}[kind]
        return p, kind, cap
    if key == "melody":
        up = bool(rng.random() < .5)
        n = int(rng.integers(3, 6)) if test else 4
        steps = [int(s) for s in rng.integers(1, 4, n - 1)] if test else [int(s) for s in rng.integers(2, 5, n - 1)]
        start = (int(rng.integers(45, 56)) if rng.random() < .5 else int(rng.integers(72, 81))) if test \
            else int(rng.integers(60, 68))
        notes = list(np.cumsum([start] + steps).tolist())
        notes = notes if up else notes[::-1]
        timbre = _pick(rng, ("flute", "violin", "guitar") if test else
                       ("flute", "organ") if regime == "train" else tuple(S.TIMBRES))
        p.update(notes=notes, timbre=timbre, note_dur=_u(rng, .3, min(.55, 2.6 / n)) if test else .45,
                 start=_u(rng, .05, .3))
        article = "An" if timbre[0] in "aeiou" else "A"
        return p, "up" if up else "down", f"{article} {timbre} melody going {'up' if up else 'down'}."
    if key == "chord":
        quality = _pick(rng, ("major", "minor"))
        timbre = _pick(rng, ("guitar", "violin", "flute")) if test else "organ" if regime == "train" \
            else _pick(rng, tuple(S.TIMBRES))
        p.update(quality=quality, timbre=timbre, root=int(rng.integers(48, 73)) if test else int(rng.integers(55, 68)),
                 dur=_u(rng, 1.0, 2.5) if test else _u(rng, 1.5, 2.5),
                 arpeggio=_u(rng, .05, .15) if test and rng.random() < .5 else 0.0)
        p["start"] = _u(rng, .1, 2.9 - p["dur"])
        article = "an" if timbre[0] in "aeiou" else "a"
        return p, quality, f"A {quality} chord played on {article} {timbre}."
    if key == "tempo":
        fast = bool(rng.random() < .5)
        bpm = (_u(rng, 125, 180, 1) if fast else _u(rng, 60, 100, 1)) if test else \
            (_u(rng, 160, 220, 1) if fast else _u(rng, 50, 80, 1))
        sound = _pick(rng, ("click", "pluck")) if test else "click"
        p.update(bpm=bpm, sound=sound, midi=int(rng.integers(50, 75)), start=_u(rng, 0, .3))
        what = "beat of clicks" if sound == "click" else "pulse of plucked notes"
        return p, "fast" if fast else "slow", f"A {'fast' if fast else 'slow'} {what}."
    if key == "instrument":
        inst = _pick(rng, SUBCATS[key].choices)
        n = int(rng.integers(2, 5)) if test else int(rng.integers(1, 4))
        notes = [int(x) for x in (rng.integers(50, 85, n) if test else rng.integers(57, 77, n))]
        p.update(timbre=inst, notes=notes, note_dur=_u(rng, .3, min(.7, 2.6 / n)) if test else _u(rng, .6, .9), start=_u(rng, .05, .2))
        return p, inst, f"A {inst} playing {'a single note' if n == 1 else 'a few notes'}."
    if key in ("digit", "speaker"):
        gender = _pick(rng, ("male", "female"))
        voices = VOICES["test" if test else "train"][gender]
        p.update(gender=gender, voice=_pick(rng, voices),
                 rate=int(_pick(rng, (130, 150, 180, 200) if test else (150, 170))),
                 pitch=int(_pick(rng, (35, 50, 65))) if test else 50)
        if key == "digit":
            d = int(rng.integers(10))
            carrier = _pick(rng, ("My number is {}.", "Your number is {}.")) if test else "The number is {}."
            p.update(digit=d, text=carrier.format(NUMS[d]))
            answer = NUMS[d]
        else:
            p["text"] = _pick(rng, SENTENCES["test" if test else "train"])
            answer = gender
        p["start"] = _u(rng, .05, .4)
        said = p["text"][0].lower() + p["text"][1:]
        return p, answer, f"A {'man' if gender == 'male' else 'woman'} says: {said}"
    raise KeyError(f"unknown sub-category {key!r}; valid: {', '.join(SUBCATS)}")


def _points(key: str, p: dict) -> int:
    """Difficulty points of a test clip (the `hard` rule of its SubCat)."""
    noisy = int(p["snr"] < 18)
    pts = {"beep_count": lambda: (p["n"] >= 3) + (p["gap"] < .2),
           "louder": lambda: (p["gap_db"] < 6) + (p["gap_db"] < 4.5),
           "sweep": lambda: (p["span"] < 1) + (p["dur"] < 1.2),
           "sound_type": lambda: (p["dur"] < .5) + ((p["kind"] == "noise burst" and p["smooth"] > 8)
                                                    or (p["kind"] == "click train" and not 6 <= p["rate"] <= 25)),
           "melody": lambda: (min(abs(a - b) for a, b in zip(p["notes"], p["notes"][1:])) == 1) + (len(p["notes"]) == 3),
           "chord": lambda: (not 52 <= p["root"] <= 68) + (p["dur"] < 1.5),
           "tempo": lambda: (abs(p["bpm"] - 112) < 25) + (p["sound"] == "pluck"),
           "instrument": lambda: any(not 55 <= x <= 79 for x in p["notes"]) + (p["note_dur"] < .4),
           "digit": lambda: (p["rate"] >= 180) + (p["pitch"] != 50),
           "speaker": lambda: 2 * ((p["gender"] == "male") == (p["pitch"] == 65) and p["pitch"] != 50)}
    return int(pts[key]()) + noisy


def difficulty(key: str, params: dict) -> str:
    """easy (0 points), medium (1) or hard (2+)."""
    return ("easy", "medium", "hard")[min(_points(key, params), 2)]


# ---------------------------------------------------------------- rendering


def _render(key: str, p: dict, rng: np.random.Generator, speech: dict) -> np.ndarray:
    """The 3 s clip of one set of parameters: the signal, white noise at `snr`, RMS `level`."""
    clip = S.silence()
    if key == "beep_count":
        clip = S.beeps([p["start"] + i * (p["dur"] + p["gap"]) for i in range(p["n"])], p["dur"], p["freq"])
    elif key == "louder":
        quiet = 10 ** (-p["gap_db"] / 20)
        a1, a2 = (1.0, quiet) if p["first_louder"] else (quiet, 1.0)
        S.place(clip, a1 * S.tone(p["f1"], p["d1"], .02, .02), p["s1"])
        S.place(clip, a2 * S.tone(p["f2"], p["d2"], .02, .02), p["s2"])
    elif key == "sweep":
        S.place(clip, S.sweep(p["f0"], p["f1"], p["dur"]), p["start"])
    elif key == "sound_type":
        x = {"noise burst": lambda: S.noise_burst(p["dur"], rng, p["smooth"]),
             "click train": lambda: S.click_train(p["rate"], p["dur"], rng),
             "steady tone": lambda: S.tone(p["freq"], p["dur"], .02, .02) if p["timbre"] == "sine"
             else S.note(p["freq"], p["dur"], "organ")}[p["kind"]]()
        S.place(clip, x, p["start"])
    elif key in ("melody", "instrument"):
        for i, m in enumerate(p["notes"]):
            S.place(clip, S.note(S.midi_hz(m), p["note_dur"], p["timbre"]), p["start"] + i * p["note_dur"])
    elif key == "chord":
        S.place(clip, S.chord(p["root"], p["quality"], p["dur"], p["timbre"], p["arpeggio"]), p["start"])
    elif key == "tempo":
        hit = (S.note(S.midi_hz(p["midi"]), .25, "guitar") if p["sound"] == "pluck"
               else S.tone(1200.0, .03, .001, .02) * np.exp(-np.arange(int(.03 * S.SR)) / (.008 * S.SR)))
        for s in np.arange(p["start"], S.CLIP_SECONDS - .05, 60.0 / p["bpm"]):
            S.place(clip, hit, float(s))
    else:  # digit, speaker
        S.place(clip, speech[_speech_spec(p)], p["start"])
    return S.set_level(S.fit(S.mix_noise(clip, p["snr"], rng)), p["level"])


def _speech_spec(p: dict) -> tuple[str, str, int, int]:
    return (p["text"], p["voice"], p["rate"], p["pitch"])


def sample_clip(key: str, regime: str = "train", seed: int = 0) -> tuple[np.ndarray, dict, str]:
    """One clip of sub-category `key` drawn as `regime` (train|base|test) would: (audio, params,
    answer). For examples and checks; the benchmark itself comes from `generate`."""
    if regime not in ("train", "base", "test"):
        raise ValueError(f"regime must be 'train', 'base' or 'test', got {regime!r}")
    if key not in SUBCATS:
        raise ValueError(f"unknown sub-category key {key!r}; valid: {', '.join(SUBCATS)}")
    rng = np.random.default_rng([seed, 99])
    params, answer, _ = _draw(key, rng, regime)
    speech = {}
    if key in ("digit", "speaker"):
        spec = _speech_spec(params)
        speech[spec] = S.speak([spec])[0]
    return _render(key, params, rng, speech), params, answer


# ---------------------------------------------------------------- planning the splits


def _order(split: str, n: int) -> list[str]:
    """Sub-categories of a split, balanced by task then by sub-category (round robin)."""
    keys = TRAIN_SUBCATS if split in ("train", "validation") else tuple(SUBCATS)
    by_task = {t: [k for k in keys if SUBCATS[k].task == t] for t in TASKS}
    return [by_task[TASKS[i % 3]][(i // 3) % len(by_task[TASKS[i % 3]])] for i in range(n)]


def _choices(key: str, answer: str, rng: np.random.Generator) -> list[str]:
    pool = list(SUBCATS[key].choices)
    if len(pool) > 4:  # digits: the answer and three others
        pool = [answer] + [c for c in rng.permutation(pool).tolist() if c != answer][:3]
    return [str(c) for c in rng.permutation(pool)]


def _base_text(key: str, kind: str, choices: list[str], answer: str, caption: str, rng) -> tuple[str, str]:
    """Prompt and response of one base-corpus item (train/base wordings only, never test's)."""
    if kind == "caption":
        return _pick(rng, CAPTION_PROMPTS), caption
    q = avqa_question(_pick(rng, SUBCATS[key].base_q + SUBCATS[key].train_q))  # base speaks of audio
    if kind == "open":
        return q, answer
    fmt = int(rng.integers(3))
    body = (user_text(q, choices, Prompt.SFT) if fmt == 0 else f"{q} Options: {', '.join(choices)}." if fmt == 1
            else f"{q} Choose one of: {' / '.join(choices)}.")
    if kind == "mc_tagged":
        return body + _pick(rng, TAG_TAILS), f"<answer>{answer}</answer>"
    if kind == "mc_think":
        return body + _pick(rng, THINK_TAILS), f"<think>{caption}</think><answer>{answer}</answer>"
    return body, answer


def _plan(split: str, n: int, seed: int) -> list[dict]:
    """Every clip of a split as data: sub-category, parameters, question, choices, answer."""
    regime = {"train": "train", "validation": "train", "test": "test", "base": "base"}[split]
    items = []
    for i, key in enumerate(_order(split, n)):
        rng = np.random.default_rng([seed, SPLIT_CODE[split], i, 0])
        params, answer, caption = _draw(key, rng, regime)
        sub = SUBCATS[key]
        item = {"i": i, "key": key, "params": params, "answer": answer, "caption": caption,
                "choices": _choices(key, answer, rng)}
        if split == "test":
            item["question"] = sub.test_q
            item["id"] = str(uuid.UUID(bytes=rng.bytes(16), version=4))
            item["difficulty"] = difficulty(key, params)
        elif split == "base":
            item["kind"] = str(rng.choice(["caption", "open", "mc_tagged", "mc_think", "mc_plain"], p=[.2, .15, .3, .15, .2]))
            item["prompt"], item["response"] = _base_text(key, item["kind"], item["choices"], answer, caption, rng)
        else:
            item["question"] = _pick(rng, sub.train_q)
        items.append(item)
    perm = np.random.default_rng([seed, SPLIT_CODE[split], 10**9]).permutation(n)
    return [items[j] for j in perm]


def _record(split: str, item: dict, n: int, offset: int) -> tuple[dict, str]:
    """The JSON record of a planned item in its split's schema, and its wav's relative path."""
    sub = SUBCATS[item["key"]]
    if split == "test":
        wav = f"test-mini-audios/{item['id']}.wav"
        return ({"id": item["id"], "audio_id": f"./{wav}", "question": item["question"],
                 "choices": item["choices"], "answer": item["answer"], "dataset": "mini-mmau",
                 "task": sub.task, "split": "test-mini", "category": sub.category,
                 "sub-category": sub.name, "difficulty": item["difficulty"]}, wav)
    if split == "base":
        rid = f"base-{n:06d}"
        return ({"id": rid, "audio_path": f"{rid}.wav", "kind": item["kind"], "prompt": item["prompt"],
                 "response": item["response"], "task": sub.task, "sub-category": sub.name}, f"base-audios/{rid}.wav")
    name = f"mini_{split}_{n:06d}"
    return ({"id": offset + n, "video_name_derived": name, "question_text": item["question"],
             "multi_choice": item["choices"], "answer": item["choices"].index(item["answer"]),
             "dataset_name": "mini-avqa", "audio_path": f"{name}.wav", "task": sub.task,
             "sub-category": sub.name}, f"{split}-audios/{name}.wav")


# ---------------------------------------------------------------- files, cache, entry points

OUTPUTS = {"train": "train.jsonl", "validation": "validation.jsonl", "test": "test-mini.json", "base": "base.jsonl"}
AUDIO_DIRS = ("train-audios", "validation-audios", "test-mini-audios", "base-audios")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write(path: Path, data: bytes) -> str:
    """Write bytes, return their sha256."""
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _cached(out: Path, seed: int, sizes: MiniSizes) -> dict | None:
    """The manifest when OUT already holds this exact benchmark with every file intact."""
    path = out / "manifest.json"
    if not path.is_file():
        return None
    man = json.loads(path.read_text())
    if (man.get("version"), man.get("seed"), man.get("sizes")) != (VERSION, seed, asdict(sizes)):
        return None
    files = man.get("files", {})
    ok = all((out / f).is_file() and _sha256(out / f) == h for f, h in files.items())
    return man if ok and files else None


def _clean(out: Path) -> None:
    """Remove what a previous generation wrote (only our own file names)."""
    for d in AUDIO_DIRS:
        for wav in (out / d).glob("*.wav"):
            wav.unlink()
    for name in (*OUTPUTS.values(), "params.jsonl", "manifest.json"):
        (out / name).unlink(missing_ok=True)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def generate(out_dir: str | Path, seed: int = 0, sizes: MiniSizes = MiniSizes(), progress: bool = True,
             force: bool = False) -> dict:
    """Write the mini benchmark to `out_dir` and return its manifest (plus `cached`: whether this
    call skipped the work because `out_dir` already held the same version, seed and sizes with
    every file intact; it says so on stdout)."""
    out = Path(out_dir)
    if not force and (man := _cached(out, seed, sizes)) is not None:
        print(f"mini-data: {out} is up to date (version {VERSION}, seed {seed}, sizes {asdict(sizes)}); skipped")
        return {**man, "cached": True}
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    _clean(out)
    plans = {s: _plan(s, getattr(sizes, s), seed) for s in SPLITS}
    specs = list(dict.fromkeys(_speech_spec(it["params"]) for s in SPLITS for it in plans[s]
                               if it["key"] in ("digit", "speaker")))
    speech = dict(zip(specs, S.speak(specs)))
    t_speech = time.perf_counter() - t0
    files: dict[str, str] = {}
    params_rows = []
    bar = tqdm(total=sum(len(p) for p in plans.values()), desc="mini-data", unit="clip", disable=not progress)
    offset = 0
    for split in SPLITS:
        records = []
        for n, item in enumerate(plans[split]):
            rec, wav = _record(split, item, n, offset)
            rng = np.random.default_rng([seed, SPLIT_CODE[split], item["i"], 1])
            (out / wav).parent.mkdir(exist_ok=True)
            buf = io.BytesIO()  # via memory: 3x faster than libsndfile seeking in a file
            sf.write(buf, _render(item["key"], item["params"], rng, speech), S.SR, subtype="PCM_16", format="WAV")
            files[wav] = _write(out / wav, buf.getvalue())
            records.append(rec)
            params_rows.append({"split": split, "id": rec["id"], "sub-category": SUBCATS[item["key"]].name,
                                "answer": item["answer"], "params": item["params"]})
            bar.update()
        offset += len(records)
        text = (json.dumps(records, ensure_ascii=False, indent=4) + "\n" if split == "test"
                else "".join(_dumps(r) + "\n" for r in records))
        files[OUTPUTS[split]] = _write(out / OUTPUTS[split], text.encode("utf-8"))
    bar.close()
    files["params.jsonl"] = _write(out / "params.jsonl", "".join(_dumps(r) + "\n" for r in params_rows).encode())
    files = dict(sorted(files.items()))
    man = {"generator": "aqa_core.mini_data", "version": VERSION, "seed": seed, "sizes": asdict(sizes),
           "sample_rate": S.SR, "clip_seconds": S.CLIP_SECONDS,
           "counts": {s: _counts(plans[s]) for s in SPLITS},
           "chance_test_mini": chance(plans["test"]),
           "content_sha256": hashlib.sha256("".join(f"{k} {v}\n" for k, v in files.items()).encode()).hexdigest(),
           "files": files,
           "timing": {"seconds": round(time.perf_counter() - t0, 2), "speech_seconds": round(t_speech, 2)}}
    (out / "manifest.json").write_text(json.dumps(man, indent=1) + "\n", encoding="utf-8")
    return {**man, "cached": False}


def _counts(items: list[dict]) -> dict[str, int]:
    c: dict[str, int] = {}
    for it in items:
        c[SUBCATS[it["key"]].name] = c.get(SUBCATS[it["key"]].name, 0) + 1
    return dict(sorted(c.items()))


def chance(items: list[dict]) -> float:
    """Expected accuracy of uniform guessing: the mean of 1/len(choices)."""
    return round(float(np.mean([1 / len(it["choices"]) for it in items])), 4) if items else 0.0


def cli(argv: list[str]) -> int:
    d = MiniSizes()
    ap = argparse.ArgumentParser(prog="python -m aqa_core mini-data", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--seed", type=int, default=0)
    for split in SPLITS:
        ap.add_argument(f"--{split}", type=int, default=getattr(d, split), help=f"clips in {split} (default {getattr(d, split)})")
    ap.add_argument("--force", action="store_true", help="regenerate even when the folder is up to date")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    sizes = MiniSizes(a.train, a.validation, a.test, a.base)
    if min(asdict(sizes).values()) < 0:
        ap.error("sizes must be >= 0")
    man = generate(a.out, a.seed, sizes, progress=not a.quiet, force=a.force)
    how = "cached; generated" if man["cached"] else "generated"
    print(f"mini-data: {a.out}: {sum(man['sizes'].values())} clips, test-mini chance {man['chance_test_mini']:.3f} "
          f"({how} in {man['timing']['seconds']} s)")
    return 0
