"""The linear probe of the validity checks (aqa_core.mini.probe): it learns what is linearly there,
and `mini-probe` runs end to end on a tiny benchmark and model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from aqa_core.mini.probe import SEGMENTS, cli, fit_probe
from aqa_core.mini.tasks import SUBCATS


def test_probe_separates_separable_classes_and_not_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.standard_normal((300, 20))
    x[:, 5] += 8 * y  # the label is linear in one feature
    predict = fit_probe(x[:200], y[:200], 3)
    assert (predict(x[200:]) == y[200:]).mean() > 0.95
    noise = rng.standard_normal((300, 20))
    predict = fit_probe(noise[:200], y[:200], 3)
    assert (predict(noise[200:]) == y[200:]).mean() < 0.6  # nothing to learn: near chance (1/3)


@pytest.mark.slow
def test_mini_probe_cli_on_a_tiny_benchmark(tmp_path, capsys):
    from aqa_core.mini.data import MiniSizes, generate
    from aqa_core.mini.model import build_untrained

    generate(tmp_path / "data", sizes=MiniSizes(train=3, validation=3, test=33, base=44), progress=False)
    model = build_untrained(tmp_path / "model", tiny=True)
    out = tmp_path / "validity" / "probe.json"  # the folder does not exist yet
    assert cli(["--data", str(tmp_path / "data"), "--model", str(model), "--out", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    subs = result["sub-categories"]
    assert set(subs) == {s.name for s in SUBCATS.values()} and result["segments"] == SEGMENTS
    for r in subs.values():
        assert r["n_train"] == 4 and r["n_test"] >= 2 and 0 <= r["accuracy"] <= 100
        assert r["ci95"][0] <= r["accuracy"] <= r["ci95"][1]
    assert "mini-probe:" in capsys.readouterr().out


@pytest.mark.slow
def test_the_probe_replays_the_stores_of_base_training_and_the_study_with_the_same_result(tmp_path):
    """The base stage keeps its tower's outputs for the base clips, the study's store holds the test
    clips: with both the probe encodes nothing, and its result is the one it computes alone."""
    from aqa_core.mini.data import MiniSizes, generate
    from aqa_core.mini.model import TINY_SPEC, BaseTraining, build_base
    from aqa_core.mini.probe import clip_rows, run_probe, tower_features
    from aqa_core.tower_cache import encode_store

    data = tmp_path / "data"
    generate(data, sizes=MiniSizes(train=3, validation=3, test=22, base=33), progress=False)
    base_store, store = tmp_path / "base-clips.safetensors", tmp_path / "outputs.safetensors"
    # 12 steps of 6 draw every one of the 33 base rows (seeded epoch permutations)
    model = build_base(data, tmp_path / "base", hp=BaseTraining(steps=12, batch_size=6), spec=TINY_SPEC,
                       pretrained_encoder=False, threads=1, progress=False, tower_store=base_store)
    rows = clip_rows(data)
    encode_store(model, [r["audio_path"] for r in rows if r["split"] == "test"], store, progress=False)
    import aqa_core.tower_cache as tc

    encoded = []
    real_replay = tc.TowerCache.replay

    def counting(self, *args, **kwargs):
        misses = self.misses
        out = real_replay(self, *args, **kwargs)
        encoded.append(self.misses - misses)
        return out

    tc.TowerCache.replay = counting
    try:
        replayed = tower_features(model, [r["audio_path"] for r in rows], threads=1, progress=False,
                                  stores=[base_store, store])
    finally:
        tc.TowerCache.replay = real_replay
    assert sum(encoded) == 0 and len(encoded) > 1  # every clip of every batch came from a store
    alone = tower_features(model, [r["audio_path"] for r in rows], threads=1, progress=False)
    assert np.array_equal(replayed, alone)
    a = run_probe(data, model, threads=1, progress=False)
    b = run_probe(data, model, threads=1, progress=False, stores=[base_store, store])
    assert a["sub-categories"] == b["sub-categories"]


def test_mini_probe_cli_names_a_wrong_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        cli(["--data", str(tmp_path), "--model", str(tmp_path), "--out", str(tmp_path / "p.json")])
    assert err.value.code == 2 and "not a mini benchmark folder" in capsys.readouterr().err


def test_mini_probe_cli_names_a_missing_store(tmp_path, capsys):
    (tmp_path / "params.jsonl").write_text("")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SystemExit) as err:
        cli(["--data", str(tmp_path), "--model", str(tmp_path), "--out", str(tmp_path / "p.json"),
             "--tower-store", str(tmp_path / "none.safetensors")])
    assert err.value.code == 2
    assert "none.safetensors: no such tower-cache store (--tower-store)" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()
