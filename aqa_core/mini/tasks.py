"""The mini benchmark's question types: for each of the 11 sub-categories (sound, music and
speech, as in MMAU) its labels, choices and wordings per split, how its parameters are drawn in
the train and test regimes (the shift), its difficulty rule, and how a clip is rendered from its
parameters (`aqa_core.mini.synth`; speech with espeak-ng). `aqa_core.mini.data` plans the splits
and writes the files.

As AVQA does, `train` asks only what makes the sound (`TRAIN_SUBCATS`: sound source, sound-effect
type, instrument); the other eight kinds, reasoning, music and speech as in MMAU, are taught by the
base corpus only and asked by `test-mini` ("unseen"). The analysis plan (book/plan.md) fixes this.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import synth as S

NUMS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class SubCat:
    """One question type: its MMAU-style labels, choices, wordings per split and its shift."""

    key: str
    task: str  # sound | music | speech
    name: str  # MMAU-style sub-category
    category: str
    choices: tuple[str, ...]
    train_q: tuple[str, ...]  # AVQA-style wordings of `train`; empty: a kind `train` never asks ("unseen")
    base_q: tuple[str, ...]  # the base corpus asks with these and train_q
    test_q: str  # the 4th wording, never in train or base
    shift: str  # train/base -> test parameters, for the book
    hard: str  # the difficulty points rule


SUBCATS = {s.key: s for s in [
    # -- the kinds `train` asks (AVQA's "what makes the sound"): AVQA-style wordings in train --
    SubCat("source", "sound", "Sound Source", "Information Extraction", S.SOURCES,
           ("What is the main source of sound in the video?", "What is the source of the sound in the video?",
            "What makes the sound in the video?"),
           ("What is making this sound?", "Which sound source can be heard?"),
           "Which of the following best identifies the sound source in the audio?",
           "bird chirps 3.5-5.5 kHz, siren 700-1100 Hz at 0.8-2 wails/s, engine 45-90 Hz, bell 400-900 Hz, "
           "rain 30-80 drops/s, phone trill 900-1400 Hz at 16-24/s, 1.5-2.6 s -> chirps 2.5-4.5 kHz, siren "
           "550-1300 Hz at 0.6-3/s, engine 35-120 Hz, bell 300-1200 Hz, rain 20-120/s, trill 700-1800 Hz at "
           "12-30/s, 0.7-2 s",
           "+1 sound < 1 s, +1 a parameter outside the train range, +1 SNR < 18 dB"),
    SubCat("sound_type", "sound", "Sound Effect Type", "Information Extraction",
           ("noise burst", "steady tone", "click train"),
           ("What kind of sound is in the video?", "Which type of sound effect is heard in the video?",
            "What sort of sound does the video contain?"),
           ("What kind of sound is this?", "Which type of sound effect is heard?"),
           "Which sound event best describes what occurs in the audio?",
           "white noise, 300-1500 Hz sine tone, 8-20 clicks/s, 0.5-1.5 s -> low-passed noise, organ-like tone, "
           "4-30 clicks/s, 0.25-1 s",
           "+1 duration < 0.5 s, +1 odd variant (dull noise, click rate < 6 or > 25/s), +1 SNR < 18 dB"),
    SubCat("instrument", "music", "Instrument Identification", "Information Extraction",
           ("flute", "violin", "guitar"),
           ("What instrument is played in the video?", "Which instrument can be heard in the video?",
            "What is the instrument in the video?"),
           ("Which instrument is playing?", "What instrument does this sound like?"),
           "Based on the timbre, which instrument is most likely heard in the audio?",
           "1-3 notes MIDI 57-76, 0.6-0.9 s -> 2-4 notes MIDI 50-84, 0.3-0.8 s",
           "+1 a note below 55 or above 79, +1 notes < 0.4 s, +1 SNR < 18 dB"),
    # -- the kinds only `base` teaches and `test-mini` asks (MMAU's reasoning, music and speech) --
    SubCat("beep_count", "sound", "Event Counting", "Reasoning", NUMS[1:5], (),
           ("How many short tones are in this clip?", "What is the number of beeps?",
            "How many beeps are there in the video?", "How many beeps can be heard?",
            "Count the beeps in the recording. How many are there?"),
           "Based on the given audio, how many distinct beep sounds occur?",
           "beeps 700-1200 Hz, 0.10-0.18 s, gaps 0.25-0.45 s -> 400-650 or 1300-2000 Hz, 0.06-0.14 s, gaps 0.12-0.35 s",
           "+1 count >= 3, +1 gap < 0.2 s, +1 SNR < 18 dB"),
    SubCat("louder", "sound", "Loudness Comparison", "Reasoning", ("the first tone", "the second tone"), (),
           ("Which tone has more volume?", "Which beep is played louder?", "Which tone is louder in the video?",
            "Which of the two tones is louder?", "Is the first or the second tone louder?"),
           "Comparing the two tones in the audio, which one has the higher loudness?",
           "same pitch 440-880 Hz, gap 8-14 dB -> pitches 400-1000 Hz within a ratio of 1.25, gap 4-9 dB",
           "+1 gap < 6 dB, +1 gap < 5 dB, +1 SNR < 18 dB"),
    SubCat("sweep", "sound", "Pitch Sweep Direction", "Information Extraction", ("rising", "falling"), (),
           ("Is the tone going up or down in pitch?", "Which way does the frequency glide?",
            "Does the pitch of the sound in the video rise or fall?", "Is the sweep rising or falling?",
            "In which direction does the pitch move?"),
           "What is the direction of the frequency change in the given audio?",
           "1.5-3 octaves from 200-500 Hz, 1.5-2.5 s -> 0.6-1.5 octaves from 150-1200 Hz, 0.8-2 s",
           "+1 span < 1 octave, +1 duration < 1.2 s, +1 SNR < 18 dB"),
    SubCat("melody", "music", "Melody Direction", "Reasoning", ("up", "down"), (),
           ("Are the notes climbing or falling?", "Does the sequence of notes rise or fall?",
            "Does the melody in the video go up or down?", "Is the melody going up or down?",
            "Which direction does the tune move?"),
           "Identify the overall contour of the melodic line in this audio.",
           "4 notes of 0.45 s, steps 2-4 semitones, from MIDI 60-67, any timbre -> 3-5 notes of 0.3-0.55 s, "
           "steps 1-3, starting at MIDI 55-65, flute/violin/guitar",
           "+1 a 1-semitone step, +1 only 3 notes, +1 SNR < 18 dB"),
    SubCat("chord", "music", "Chord Quality", "Information Extraction", ("major", "minor"), (),
           ("Does the chord sound major or minor?", "Which chord type is played?",
            "Is the chord played in the video major or minor?", "What is the quality of the chord?",
            "Is this chord major or minor?"),
           "Based on the harmony in the audio, what is the chord quality?",
           "block chord (any timbre), root MIDI 55-67, 1.5-2.5 s -> root 48-72, guitar/violin/flute, 1-2.5 s, "
           "half of them arpeggiated",
           "+1 root < 52 or > 68, +1 duration < 1.5 s, +1 SNR < 18 dB"),
    SubCat("tempo", "music", "Tempo", "Information Extraction", ("fast", "slow"), (),
           ("How fast is the beat?", "Is the pace of the notes quick or slow?",
            "Is the rhythm in the video fast or slow?",
            "What is the tempo of the beat?", "Is the pulse fast or slow?"),
           "How would you describe the tempo of the music in the audio?",
           "woodblock clicks, fast 160-220 / slow 50-80 BPM -> plucked notes or clicks, fast 125-180 / slow 60-100 BPM",
           "+1 within 25 BPM of 112, +1 plucked notes, +1 SNR < 18 dB"),
    SubCat("digit", "speech", "Spoken Digit", "Information Extraction", NUMS, (),
           ("What number is mentioned?", "Which digit can you hear?", "What is the number spoken in the video?",
            "Which number does the speaker say?", "What digit is said?"),
           "Based on the given audio, which number does the voice announce?",
           "'The number is N.', voices en+m1/m3/f1/f3, 150-170 wpm -> 'My/Your number is N.', "
           "voices en+m2/m7/f2/f4, 130-200 wpm, pitch 35-65",
           "+1 rate >= 180, +1 pitch not 50, +1 SNR < 18 dB"),
    SubCat("speaker", "speech", "Speaker Gender", "Reasoning", ("male", "female"), (),
           ("Does a man or a woman speak?", "Who is talking, a male or a female voice?",
            "Is the person speaking in the video male or female?", "Is the speaker male or female?",
            "What is the gender of the voice?"),
           "Identify the likely gender of the speaker in this audio.",
           "voices en+m1/m3/f1/f3 at pitch 50 -> voices en+m2/m7/f2/f4, pitch 35-65, other sentences",
           "+2 pitch toward the other gender (male 65, female 35), +1 SNR < 18 dB"),
]}
TRAIN_SUBCATS = tuple(k for k, s in SUBCATS.items() if s.train_q)

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


def pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def draw_params(key: str, rng: np.random.Generator, regime: str) -> tuple[dict, str, str]:
    """Parameters, answer (choice text) and caption of one clip; `regime` is train|base|test."""
    test = regime == "test"
    p: dict[str, Any] = {"snr": _u(rng, 10, 30, 1) if test else _u(rng, 25, 40, 1),
                         "level": _u(rng, -28, -10, 1) if test else _u(rng, -22, -14, 1)}
    if key == "source":
        return _draw_source(p, rng, test)
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
        f1 = _u(rng, 400, 1000, 1) if test else _u(rng, 440, 880, 1)
        p.update(first_louder=first, gap_db=_u(rng, 4, 9, 2) if test else _u(rng, 8, 14, 2),
                 f1=f1, f2=round(f1 * 2 ** float(rng.uniform(-.32, .32)), 1) if test else f1,
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
        kind = pick(rng, SUBCATS[key].choices)
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
        start = int(rng.integers(55, 66)) if test else int(rng.integers(60, 68))
        notes = list(np.cumsum([start] + steps).tolist())
        notes = notes if up else notes[::-1]
        timbre = pick(rng, ("flute", "violin", "guitar") if test else
                       ("flute", "organ") if regime == "train" else tuple(S.TIMBRES))
        p.update(notes=notes, timbre=timbre, note_dur=_u(rng, .3, min(.55, 2.6 / n)) if test else .45,
                 start=_u(rng, .05, .3))
        article = "An" if timbre[0] in "aeiou" else "A"
        return p, "up" if up else "down", f"{article} {timbre} melody going {'up' if up else 'down'}."
    if key == "chord":
        quality = pick(rng, ("major", "minor"))
        timbre = pick(rng, ("guitar", "violin", "flute")) if test else "organ" if regime == "train" \
            else pick(rng, tuple(S.TIMBRES))
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
        sound = pick(rng, ("click", "pluck")) if test else "click"
        p.update(bpm=bpm, sound=sound, midi=int(rng.integers(50, 75)), start=_u(rng, 0, .3))
        what = "beat of clicks" if sound == "click" else "pulse of plucked notes"
        return p, "fast" if fast else "slow", f"A {'fast' if fast else 'slow'} {what}."
    if key == "instrument":
        inst = pick(rng, SUBCATS[key].choices)
        n = int(rng.integers(2, 5)) if test else int(rng.integers(1, 4))
        notes = [int(x) for x in (rng.integers(50, 85, n) if test else rng.integers(57, 77, n))]
        p.update(timbre=inst, notes=notes, note_dur=_u(rng, .3, min(.7, 2.6 / n)) if test else _u(rng, .6, .9),
                 start=_u(rng, .05, .2))
        return p, inst, f"A {inst} playing {'a single note' if n == 1 else 'a few notes'}."
    if key in ("digit", "speaker"):
        gender = pick(rng, ("male", "female"))
        voices = VOICES["test" if test else "train"][gender]
        p.update(gender=gender, voice=pick(rng, voices),
                 rate=int(pick(rng, (130, 150, 180, 200) if test else (150, 170))),
                 pitch=int(pick(rng, (35, 50, 65))) if test else 50)
        if key == "digit":
            d = int(rng.integers(10))
            carrier = pick(rng, ("My number is {}.", "Your number is {}.")) if test else "The number is {}."
            p.update(digit=d, text=carrier.format(NUMS[d]))
            answer = NUMS[d]
        else:
            p["text"] = pick(rng, SENTENCES["test" if test else "train"])
            answer = gender
        p["start"] = _u(rng, .05, .4)
        said = p["text"][0].lower() + p["text"][1:]
        return p, answer, f"A {'man' if gender == 'male' else 'woman'} says: {said}"
    raise KeyError(f"unknown sub-category {key!r}; valid: {', '.join(SUBCATS)}")


SOURCE_CAPTIONS = {"bird": "A bird chirping.", "siren": "A siren wailing.", "engine": "An engine running.",
                   "bell": "A bell ringing.", "rain": "Rain falling.", "phone": "A phone ringing."}


def _draw_source(p: dict, rng: np.random.Generator, test: bool) -> tuple[dict, str, str]:
    """One everyday sound source (S.SOURCES); test clips are shorter and drawn from wider ranges
    that keep each source's cue. `p["odd"]`: a parameter outside the train range."""
    src = pick(rng, S.SOURCES)
    dur = _u(rng, .7, 2.0) if test else _u(rng, 1.5, 2.6)
    p.update(src=src)
    if src == "bird":
        f_hi = _u(rng, 2500, 4500, 1) if test else _u(rng, 3500, 5500, 1)
        chirp, gap = _u(rng, .04, .09), _u(rng, .06, .2)
        n = max(1, min(6, int(dur / (chirp + gap))))
        p.update(n=n, chirp=chirp, gap=gap, f_hi=f_hi, f_lo=round(f_hi * _u(rng, .45, .65), 1), odd=f_hi < 3500)
        length = n * chirp + (n - 1) * gap
    elif src == "siren":
        center = _u(rng, 550, 1300, 1) if test else _u(rng, 700, 1100, 1)
        rate = _u(rng, .6, 3.0) if test else _u(rng, .8, 2.0)
        p.update(center=center, depth=round(center * _u(rng, .2, .35), 1), rate=rate, dur=dur,
                 odd=not (700 <= center <= 1100 and .8 <= rate <= 2.0))
        length = dur
    elif src == "engine":
        f0 = _u(rng, 35, 120, 1) if test else _u(rng, 45, 90, 1)
        p.update(f0=f0, flutter=_u(rng, 8, 20, 1), dur=dur, odd=not 45 <= f0 <= 90)
        length = dur
    elif src == "bell":
        f0 = _u(rng, 300, 1200, 1) if test else _u(rng, 400, 900, 1)
        strikes = int(rng.integers(1, 3))
        decay = _u(rng, .25, .6) if test else _u(rng, .4, .7)
        p.update(f0=f0, strikes=strikes, decay=decay, odd=not 400 <= f0 <= 900)
        length = min(S.CLIP_SECONDS, decay * 4) + (strikes - 1) * .9
    elif src == "rain":
        density = _u(rng, 20, 120, 1) if test else _u(rng, 30, 80, 1)
        p.update(density=density, dur=dur, odd=not 30 <= density <= 80)
        length = dur
    else:  # phone
        f1 = _u(rng, 700, 1800, 1) if test else _u(rng, 900, 1400, 1)
        rate = _u(rng, 12, 30, 1) if test else _u(rng, 16, 24, 1)
        burst = _u(rng, .35, .7) if test else _u(rng, .6, .9)
        bursts = 1 if dur < 1.2 else 2
        p.update(f1=f1, rate=rate, burst=burst, bursts=bursts,
                 odd=not (900 <= f1 <= 1400 and 16 <= rate <= 24))
        length = bursts * burst + (bursts - 1) * .4
    p["length"] = round(min(length, 2.9), 3)
    p["start"] = _u(rng, .05, max(.06, 2.95 - p["length"]))
    return p, src, SOURCE_CAPTIONS[src]


def source_signal(p: dict, rng: np.random.Generator) -> np.ndarray:
    """The signal of a `source` clip's parameters (before placing, noise and level)."""
    src = p["src"]
    if src == "bird":
        return S.bird(p["n"], p["chirp"], p["gap"], p["f_hi"], p["f_lo"])
    if src == "siren":
        return S.siren(p["center"], p["depth"], p["rate"], p["dur"])
    if src == "engine":
        return S.engine(p["f0"], p["flutter"], p["dur"])
    if src == "bell":
        return S.bell(p["f0"], p["strikes"], p["decay"])
    if src == "rain":
        return S.rain(p["density"], p["dur"], rng)
    return S.phone(p["f1"], p["rate"], p["burst"], p["bursts"])


def _points(key: str, p: dict) -> int:
    """Difficulty points of a test clip (the `hard` rule of its SubCat)."""
    noisy = int(p["snr"] < 18)
    pts = {"source": lambda: (p["length"] < 1) + bool(p["odd"]),
           "beep_count": lambda: (p["n"] >= 3) + (p["gap"] < .2),
           "louder": lambda: (p["gap_db"] < 6) + (p["gap_db"] < 5),
           "sweep": lambda: (p["span"] < 1) + (p["dur"] < 1.2),
           "sound_type": lambda: (p["dur"] < .5) + ((p["kind"] == "noise burst" and p["smooth"] > 8)
                                                    or (p["kind"] == "click train" and not 6 <= p["rate"] <= 25)),
           "melody": lambda: (min(abs(a - b) for a, b in zip(p["notes"], p["notes"][1:], strict=False)) == 1)
                             + (len(p["notes"]) == 3),
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


def render_clip(key: str, p: dict, rng: np.random.Generator, speech: dict) -> np.ndarray:
    """The 3 s clip of one set of parameters: the signal, white noise at `snr`, RMS `level`."""
    clip = S.silence()
    if key == "source":
        S.place(clip, source_signal(p, rng), p["start"])
    elif key == "beep_count":
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
        S.place(clip, speech[speech_spec(p)], p["start"])
    return S.set_level(S.fit(S.mix_noise(clip, p["snr"], rng)), p["level"])


def speech_spec(p: dict) -> tuple[str, str, int, int]:
    return (p["text"], p["voice"], p["rate"], p["pitch"])


def sample_clip(key: str, regime: str = "train", seed: int = 0) -> tuple[np.ndarray, dict, str]:
    """One clip of sub-category `key` drawn as `regime` (train|base|test) would: (audio, params,
    answer). For examples and checks; the benchmark itself comes from `generate`."""
    if regime not in ("train", "base", "test"):
        raise ValueError(f"regime must be 'train', 'base' or 'test', got {regime!r}")
    if key not in SUBCATS:
        raise ValueError(f"unknown sub-category key {key!r}; valid: {', '.join(SUBCATS)}")
    rng = np.random.default_rng([seed, 99])
    params, answer, _ = draw_params(key, rng, regime)
    speech = {}
    if key in ("digit", "speaker"):
        spec = speech_spec(params)
        speech[spec] = S.speak([spec])[0]
    return render_clip(key, params, rng, speech), params, answer
