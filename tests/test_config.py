"""Recipe parsing: defaults < recipe < overrides; unknown keys and bad types fail clearly."""
from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from aqa_core.config import RecipeError, config_hash, load_recipe, save_config


@dataclass
class Demo:
    learning_rate: float = 1e-6
    max_steps: int = 500
    prompt: Literal[1, 2, 3] = 2
    rewards: list[str] = field(default_factory=lambda: ["accuracy", "format"])
    bf16: bool | None = None
    output_dir: str = "runs/x"


def test_precedence_defaults_recipe_overrides(tmp_path):
    (tmp_path / "r.yaml").write_text("learning_rate: 1e-5\nmax_steps: 10\n")
    cfg = load_recipe(Demo, tmp_path / "r.yaml", ["max_steps=3", "rewards=[accuracy, think_format]"])
    assert cfg.learning_rate == 1e-5  # recipe over default; YAML's "1e-5" string is accepted
    assert cfg.max_steps == 3  # override over recipe
    assert cfg.rewards == ["accuracy", "think_format"]
    assert cfg.prompt == 2  # default kept


def test_recipe_inherits_with_base(tmp_path):
    (tmp_path / "a.yaml").write_text("max_steps: 10\nprompt: 3\n")
    (tmp_path / "b.yaml").write_text("_base: a.yaml\nmax_steps: 20\n")
    cfg = load_recipe(Demo, tmp_path / "b.yaml")
    assert (cfg.max_steps, cfg.prompt) == (20, 3)


@pytest.mark.parametrize(
    "content,message",
    [
        ("lr: 1\n", r"unknown key 'lr' in .*valid keys: learning_rate, max_steps, prompt, rewards, bf16, output_dir"),
        ("max_steps: 1.5\n", "'max_steps' must be an integer"),
        ("prompt: 4\n", r"'prompt' must be one of \[1, 2, 3\]"),
        ("learning_rate: fast\n", "'learning_rate' must be a number"),
        ("bf16: maybe\n", "'bf16' must be true or false"),
        ("- a\n- b\n", "flat mapping"),
        ("a: [\n", "invalid YAML"),
    ],
)
def test_bad_recipes_fail_naming_the_key(tmp_path, content, message):
    (tmp_path / "r.yaml").write_text(content)
    with pytest.raises(RecipeError, match=message):
        load_recipe(Demo, tmp_path / "r.yaml")


def test_bad_overrides(tmp_path):
    with pytest.raises(RecipeError, match="not key=value"):
        load_recipe(Demo, None, ["max_steps"])
    with pytest.raises(RecipeError, match="unknown key 'steps' in --set"):
        load_recipe(Demo, None, ["steps=3"])
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(Demo, tmp_path / "missing.yaml")


def test_resolved_config_is_saved_and_hashed(tmp_path):
    cfg = load_recipe(Demo, None, ["bf16=true"])
    path = save_config(cfg, tmp_path / "run")
    assert yaml.safe_load(path.read_text())["bf16"] is True
    assert config_hash(cfg) != config_hash(Demo())
