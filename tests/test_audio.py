"""Audio loading: channel 0, 16 kHz float32, clear errors naming the file."""
import numpy as np
import pytest
import soundfile as sf

from aqa_core.audio import AudioError, check_audio_files, load_audio


def test_channel_0_and_resampling(tmp_path):
    sr = 8000
    t = np.arange(sr) / sr
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), np.zeros(sr) + 0.25
    sf.write(str(tmp_path / "s.wav"), np.stack([left, right], 1), sr)
    wav = load_audio(tmp_path / "s.wav")
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - 16000) <= 2
    assert abs(float(np.mean(wav))) < 0.01  # channel 0 (a sine), not channel 1 (a constant 0.25)
    assert 0.3 < float(np.max(np.abs(wav))) < 0.6


def test_16k_file_is_returned_unchanged(tmp_path):
    x = (0.1 * np.sin(np.arange(1600) / 3.0)).astype(np.float32)
    sf.write(str(tmp_path / "a.wav"), x, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(tmp_path / "a.wav"), x)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: None, "audio file not found"),
        (lambda p: p.write_bytes(b"not a wav at all"), "unreadable audio"),
        (lambda p: sf.write(str(p), np.zeros((0,)), 16000), "empty audio"),
        (lambda p: sf.write(str(p), np.zeros(1600), 16000), "silent audio"),
    ],
)
def test_bad_files_name_the_file(tmp_path, make, message):
    p = tmp_path / "bad.wav"
    make(p)
    with pytest.raises(AudioError, match=message) as info:
        load_audio(p)
    assert str(p) in str(info.value)


def test_check_audio_files_reports_problems_without_decoding(tmp_path):
    sf.write(str(tmp_path / "ok.wav"), np.ones(10) * 0.1, 16000)
    (tmp_path / "junk.wav").write_bytes(b"junk")
    problems = check_audio_files([tmp_path / "ok.wav", tmp_path / "junk.wav", tmp_path / "gone.wav"])
    assert [(p.split("/")[-1], why.split(" ")[0]) for p, why in problems] == [("junk.wav", "unreadable"), ("gone.wav", "not")]
