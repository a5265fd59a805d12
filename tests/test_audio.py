"""Audio loading: channel 0, 16 kHz float32, clear errors naming the file; the one audio check."""
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
        (lambda p: sf.write(str(p), np.full(1600, 5e-5), 16000, subtype="FLOAT"), r"silent audio \(peak 5.0e-05"),
        (lambda p: sf.write(str(p), np.full(1599, 0.1), 16000), r"too short \(0.100 s"),
        # a float wav may hold NaN or Inf: max(|x|) < threshold is False for NaN, so the silence test passed it
        (lambda p: sf.write(str(p), np.r_[np.full(1600, 0.1), [np.nan] * 3], 16000, subtype="FLOAT"),
         r"non-finite audio \(3 NaN and 0 infinite samples of 1603\)"),
        (lambda p: sf.write(str(p), np.r_[[np.inf, -np.inf], np.full(1600, 0.1)], 16000, subtype="DOUBLE"),
         r"non-finite audio \(0 NaN and 2 infinite samples"),
    ],
)
def test_bad_files_name_the_file(tmp_path, make, message):
    p = tmp_path / "bad.wav"
    make(p)
    with pytest.raises(AudioError, match=message) as info:
        load_audio(p)
    assert str(p) in str(info.value)


def test_the_one_audio_check_decodes_every_file_and_counts_long_clips(tmp_path):
    sf.write(str(tmp_path / "ok.wav"), np.full(1600, 0.1), 16000)
    sf.write(str(tmp_path / "long.wav"), np.full(16000 * 4, 0.1), 16000)
    sf.write(str(tmp_path / "quiet.wav"), np.zeros(16000), 16000)  # a header-only check passed this one
    (tmp_path / "junk.wav").write_bytes(b"junk")
    sf.write(str(tmp_path / "nan.wav"), np.r_[np.full(1600, 0.1), np.nan], 16000, subtype="FLOAT")
    paths = [tmp_path / n for n in ("ok.wav", "long.wav", "quiet.wav", "junk.wav", "gone.wav", "ok.wav", "nan.wav")]
    with pytest.warns(UserWarning, match=r"1 clip\(s\) longer than the model's 3 s window.*long.wav \(4.0 s\)"):
        problems = check_audio_files(paths, window_seconds=3.0)
    assert [(p.split("/")[-1], why.split(" ")[0]) for p, why in problems] == [
        ("quiet.wav", "silent"), ("junk.wav", "unreadable"), ("gone.wav", "audio"), ("nan.wav", "non-finite")]


def test_the_window_is_the_models(tmp_path):
    import json

    from aqa_core.audio import WINDOW_SECONDS, model_window_seconds

    (tmp_path / "processor_config.json").write_text(json.dumps(
        {"feature_extractor": {"n_samples": 48000, "sampling_rate": 16000}}))
    assert model_window_seconds(tmp_path) == 3.0
    assert model_window_seconds(tmp_path / "nowhere") == WINDOW_SECONDS == 30.0
