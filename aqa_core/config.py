"""Recipes: flat YAML files of run settings, read into dataclasses.

Precedence is dataclass defaults < recipe file < explicit `key=value` overrides. Field names are
TRL's wherever the meaning is the same (learning_rate, num_generations, beta, ...). An unknown
key is an error that names the valid ones; a value of the wrong type is an error naming the key.
Every run writes its resolved config next to its results (`save_config`).

>>> from dataclasses import dataclass
>>> @dataclass
... class R:
...     learning_rate: float = 1e-6
...     max_steps: int = 500
>>> load_recipe(R, None, ["max_steps=3"])
R(learning_rate=1e-06, max_steps=3)
>>> load_recipe(R, None, ["lr=3"])
Traceback (most recent call last):
...
aqa_core.config.RecipeError: unknown key 'lr' in --set; valid keys: learning_rate, max_steps
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class RecipeError(ValueError):
    """A recipe or override that cannot be used; the message names the key and the valid ones."""


def _coerce(name: str, value: Any, annotation: Any, source: str) -> Any:
    """Check (and gently convert) a value against a dataclass field annotation."""
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing) | {"Path": Path})  # our own annotations
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(name, value, arg, source)
            except RecipeError as exc:
                errors.append(str(exc))
        raise RecipeError(errors[0] if errors else f"{source}: bad value for {name!r}: {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise RecipeError(f"{source}: {name!r} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{source}: {name!r} must be a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(name, v, inner, source) for v in value]
        return items if origin is list else tuple(items)
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{source}: {name!r} must be a mapping, got {value!r}")
        return value
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "yes", "no", "1", "0"}:
            return value.lower() in {"true", "yes", "1"}
        raise RecipeError(f"{source}: {name!r} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise RecipeError(f"{source}: {name!r} must be an integer, got {value!r}")
        try:
            f = float(value)
        except ValueError:
            raise RecipeError(f"{source}: {name!r} must be an integer, got {value!r}") from None
        if f != int(f):
            raise RecipeError(f"{source}: {name!r} must be an integer, got {value!r}")
        return int(f)
    if annotation is float:
        if isinstance(value, bool):
            raise RecipeError(f"{source}: {name!r} must be a number, got {value!r}")
        try:
            return float(value)  # YAML reads 1e-6 as a string: accept it
        except (TypeError, ValueError):
            raise RecipeError(f"{source}: {name!r} must be a number, got {value!r}") from None
    if annotation is str:
        if isinstance(value, (dict, list)):
            raise RecipeError(f"{source}: {name!r} must be a string, got {value!r}")
        return str(value)
    return value


def _apply(obj: T, updates: dict[str, Any], source: str) -> T:
    fields = {f.name: f for f in dataclasses.fields(obj)}
    hints = typing.get_type_hints(type(obj))
    unknown = [k for k in updates if k not in fields]
    if unknown:
        raise RecipeError(f"unknown key {unknown[0]!r} in {source}; valid keys: {', '.join(fields)}")
    values = {k: _coerce(k, v, hints.get(k, Any), source) for k, v in updates.items()}
    return dataclasses.replace(obj, **values)


#: What a run's training clips sound like (the GRPO and SFT recipes' `train_audio`): the real audio,
#: or zeros of each clip's length (training without listening; evaluation always hears the real audio).
TRAIN_AUDIO = ("real", "silence")


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """`["beta=0.04", "rewards=[accuracy, format]"]` -> a dict; values are read as YAML scalars."""
    out: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise RecipeError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def add_set_argument(ap: Any, help: str = "override recipe keys (repeatable)") -> None:
    """The runners' and the preflight's `--set KEY=VALUE [KEY=VALUE ...]`, repeatable; read it
    back with `set_overrides`."""
    ap.add_argument("--set", dest="overrides", action="append", nargs="+", default=[], metavar="KEY=VALUE", help=help)


def set_overrides(args: Any) -> list[str]:
    """Every KEY=VALUE given to `--set` (`add_set_argument`), in order."""
    return [kv for group in args.overrides for kv in group]


def read_recipe(path: str | Path) -> dict[str, Any]:
    """A recipe file's flat mapping (`_base: other.yaml` inherits from another recipe)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: invalid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a flat mapping of keys to values")
    base = data.pop("_base", None)
    if base is not None:
        merged = read_recipe(path.parent / base)
        merged.update(data)
        data = merged
    return data


def load_recipe(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Defaults < recipe file < `key=value` overrides, every key checked against `cls`."""
    obj = cls()
    if path is not None:
        obj = _apply(obj, read_recipe(path), str(path))
    if overrides:
        obj = _apply(obj, parse_overrides(overrides), "--set")
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(obj).items()}


def save_config(obj: Any, run_dir: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config (every field, defaults included) into the run folder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / name
    path.write_text(yaml.safe_dump(to_dict(obj), sort_keys=False), encoding="utf-8")
    return path


def config_hash(obj: Any) -> str:
    """A short stable hash of a resolved config, for caching."""
    import hashlib

    return hashlib.sha256(json.dumps(to_dict(obj), sort_keys=True, default=str).encode()).hexdigest()[:16]
