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


def test_mini_probe_cli_names_a_wrong_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        cli(["--data", str(tmp_path), "--model", str(tmp_path), "--out", str(tmp_path / "p.json")])
    assert err.value.code == 2 and "not a mini benchmark folder" in capsys.readouterr().err
