"""The SFT runner: recipes parse (paper values, errors naming the valid keys), full and LoRA
runs write what they should and train, the trainer sees labels only on the answer, LoRA keeps
the base weights and its merged checkpoint loads, and --resume continues step and data order."""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from aqa_core.config import RecipeError, load_recipe
from aqa_core.runs import RunDirError, model_dir, read_metrics
from aqa_core.train import sft
from aqa_core.train.sft import SFTRecipe, check_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes" / "sft"


# ----------------------------------------------------------------------------- recipes (fast)


def test_paper_recipes_hold_the_papers_settings():
    for name in ("paper-full", "paper-lora"):
        cfg = load_recipe(SFTRecipe, RECIPES / f"{name}.yaml")
        assert (cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps) == (4, 1)
        assert (cfg.learning_rate, cfg.num_train_epochs, cfg.save_steps) == (5e-6, 4.0, 200)
        assert cfg.optim.startswith("adamw") and cfg.max_steps == -1 and cfg.sft_tagged is False
        assert cfg.use_peft is (name == "paper-lora")
    assert load_recipe(SFTRecipe, RECIPES / "paper-full.yaml").freeze_audio_tower is False


def test_every_sft_recipe_parses_and_checks():
    found = sorted(RECIPES.glob("*.yaml"))
    assert {p.stem for p in found} >= {"paper-full", "paper-lora", "mini-full", "mini-lora"}
    for path in found:
        check_recipe(load_recipe(SFTRecipe, path))


def test_unknown_key_names_the_valid_ones(tmp_path):
    (tmp_path / "r.yaml").write_text("train_data: x.jsonl\nlora_rank: 8\n")
    with pytest.raises(RecipeError, match=r"unknown key 'lora_rank'.*valid keys: .*lora_r, lora_alpha"):
        load_recipe(SFTRecipe, tmp_path / "r.yaml")
    with pytest.raises(RecipeError, match=r"unknown key 'lr' in --set"):
        load_recipe(SFTRecipe, None, ["lr=1e-5"])
    with pytest.raises(RecipeError, match="'per_device_train_batch_size' must be an integer"):
        load_recipe(SFTRecipe, None, ["per_device_train_batch_size=2.5"])


@pytest.mark.parametrize("overrides,message", [
    ([], "train_data is empty"),
    (["train_data=x.jsonl", "warmup_ratio=1.5"], r"warmup_ratio must be in \[0, 1\)"),
    (["train_data=x.jsonl", "save_steps=0"], "save_steps must be >= 1"),
    (["train_data=x.jsonl", "use_peft=true", "lora_target_modules=[]"], "LoRA needs"),
    (["train_data=x.jsonl", "prompt=3"], "prompt must be 1 .* or 2"),
    (["train_data=x.jsonl", "prompt=2"], "set sft_tagged: true"),
    (["train_data=x.jsonl", "train_audio=noise"], "train_audio must be real or silence"),
])
def test_check_recipe_errors(overrides, message):
    with pytest.raises(RecipeError, match=message):
        check_recipe(load_recipe(SFTRecipe, None, overrides))


def test_trl_args_reach_sft_config_and_are_checked():
    from aqa_core.train.common import Precision

    cpu = Precision("cpu", False, "float32")
    cfg = load_recipe(SFTRecipe, RECIPES / "mini-full.yaml", ["trl_args={eval_strategy: 'no', seed: 3}"])
    with pytest.raises(RecipeError, match="'seed' is set by the runner"):
        sft.sft_config(cfg, cpu)
    cfg = load_recipe(SFTRecipe, RECIPES / "mini-full.yaml", ["trl_args={save_only_model: true}"])
    assert sft.sft_config(cfg, cpu).save_only_model is True
    cfg = load_recipe(SFTRecipe, RECIPES / "mini-full.yaml", ["trl_args={save_only_models: true}"])
    with pytest.raises(RecipeError, match=r"not a SFTConfig field \(did you mean save_only_model"):
        sft.sft_config(cfg, cpu)


def test_one_lora_builder_keeps_each_recipes_targets():
    """GRPO states a regex, SFT a list of projections; both adapt the same modules, all inside the
    language model (the Whisper tower's q/k/v projections are left alone)."""
    import re

    from aqa_core.mini.model import TINY_SPEC, make_model
    from aqa_core.train.grpo import GRPORecipe
    from aqa_core.train.lora import lora_config

    model, _ = make_model(TINY_SPEC, pretrained_encoder=False)
    names = [n for n, _ in model.named_modules()]
    grpo = load_recipe(GRPORecipe, RECIPES.parent / "grpo" / "paper.yaml", ["use_peft=true"])
    sft_lora = load_recipe(SFTRecipe, RECIPES / "paper-lora.yaml")
    chosen = [{n for n in names if re.fullmatch(lora_config(cfg).target_modules, n)} for cfg in (grpo, sft_lora)]
    assert chosen[0] == chosen[1]
    assert len(chosen[0]) == 7 * TINY_SPEC.num_hidden_layers
    assert all(".language_model." in n for n in chosen[0])
    assert any("audio_tower" in n and n.endswith("q_proj") for n in names)
    # either form in either recipe: an SFT recipe may state the regex, names may come as one string
    as_regex = load_recipe(SFTRecipe, RECIPES / "paper-lora.yaml", [f"lora_target_modules={grpo.lora_target_modules}"])
    as_names = load_recipe(GRPORecipe, RECIPES.parent / "grpo" / "paper.yaml",
                           ["use_peft=true",
                            "lora_target_modules=q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"])
    for cfg in (as_regex, as_names):
        assert {n for n in names if re.fullmatch(lora_config(cfg).target_modules, n)} == chosen[0]
    with pytest.raises(RecipeError, match="a list holds module names"):
        lora_config(load_recipe(SFTRecipe, RECIPES / "paper-lora.yaml", ["lora_target_modules=['.*q_proj']"]))


def test_cli_reports_recipe_errors(tmp_path, capsys):
    assert sft.cli(["--recipe", str(RECIPES / "paper-full.yaml"), "--set", "nope=1"]) == 2
    assert "unknown key 'nope'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    """A tiny random Qwen2-Audio and an 8-question mini train split (R1-AQA JSONL + wavs)."""
    from aqa_core.mini import data as mini_data
    from aqa_core.mini import model as mini_model

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("sft")
    model = mini_model.build_untrained(root / "tiny", tiny=True)
    mini_data.generate(root / "data", sizes=mini_data.MiniSizes(train=8, validation=4, test=4, base=8), progress=False)
    return {"model": model, "data": root / "data", "root": root}


def _cfg(setup, name, **kw) -> SFTRecipe:
    base = SFTRecipe(
        model_name_or_path=str(setup["model"]), train_data=str(setup["data"] / "train.jsonl"),
        train_audio_dir=str(setup["data"] / "train-audios"), output_dir=str(setup["root"] / name),
        learning_rate=1e-3, per_device_train_batch_size=4, max_steps=4, save_steps=2, logging_steps=1,
        lr_scheduler_type="constant", seed=7,
    )
    return replace(base, **kw)


def _weights(path) -> dict[str, torch.Tensor]:
    from transformers import Qwen2AudioForConditionalGeneration

    return Qwen2AudioForConditionalGeneration.from_pretrained(path).state_dict()


def _losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir) if "loss" in r}


# ----------------------------------------------------------------------------- end to end (slow)


@pytest.mark.slow
def test_full_sft_end_to_end(tiny_setup, monkeypatch):
    """Files written, losses finite and falling, checkpoints load, and the trainer's labels are
    -100 everywhere but on the answer and <|im_end|>."""
    import trl

    seen = []
    original = trl.SFTTrainer.compute_loss

    def spy(self, model, inputs, *args, **kwargs):
        seen.append({k: inputs[k].detach().cpu().clone() for k in ("input_ids", "labels")})
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(trl.SFTTrainer, "compute_loss", spy)
    cfg = _cfg(tiny_setup, "full", max_steps=6)
    metrics = sft.run_sft(cfg)
    run = Path(cfg.output_dir)

    assert (run / "config.yaml").is_file() and metrics["global_step"] == 6
    assert json.loads((run / "trainer_args.json").read_text())["max_steps"] == 6
    assert "transformers" in json.loads((run / "provenance.json").read_text())["launches"][0]["packages"]
    losses = _losses(run)
    assert sorted(losses) == [1, 2, 3, 4, 5, 6] and all(math.isfinite(v) for v in losses.values())
    assert losses[6] < losses[1]
    assert all("learning_rate" in r for r in read_metrics(run))
    assert metrics["seconds_per_step"] > 0
    base = _weights(cfg.model_name_or_path)
    for folder in ("checkpoint-2", "checkpoint-6", "final"):
        w = _weights(run / folder)
        assert set(w) == set(base)
    assert any(not torch.equal(w[k], base[k]) for k in base)  # full SFT moved the weights

    # What the trainer received: the answer (and the closing <|im_end|>) carry the loss, nothing else.
    from transformers import AutoProcessor

    tok = AutoProcessor.from_pretrained(cfg.model_name_or_path).tokenizer
    audio_id = tok.convert_tokens_to_ids("<|AUDIO|>")
    rows = [json.loads(line) for line in (tiny_setup["data"] / "train.jsonl").read_text().splitlines()]
    answers = {r["multi_choice"][r["answer"]] for r in rows}
    assert len(seen) == 6
    for batch in seen:
        for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True):
            kept = labels != -100
            assert kept.any() and (labels[kept] == ids[kept]).all()
            first = int(kept.nonzero().min())
            assert (ids[:first] == audio_id).any()  # the whole prompt, audio included, is masked
            target = tok.decode(labels[kept])
            assert target.endswith("<|im_end|>") and "<answer>" not in target  # prompt <1>, untagged
            assert target.removesuffix("<|im_end|>") in answers


@pytest.mark.slow
def test_lora_sft_keeps_base_and_saves_merged(tiny_setup):
    from peft import PeftModel
    from transformers import Qwen2AudioForConditionalGeneration, TrainerCallback

    class Grab(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    grab = Grab()
    cfg = _cfg(tiny_setup, "lora", use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0)
    sft.run_sft(cfg, callbacks=[grab])
    run = Path(cfg.output_dir)
    base = _weights(cfg.model_name_or_path)

    # The adapter run leaves every base weight as it was; LoRA sits in the language model only.
    lora_keys = [k for k in grab.state if ".lora_" in k]
    assert lora_keys and all(".language_model." in k for k in lora_keys)
    for key, value in grab.state.items():
        if ".lora_" not in key:
            plain = key.removeprefix("base_model.model.").replace(".base_layer.", ".")
            assert torch.equal(value, base[plain]), key
    losses = _losses(run)
    assert all(math.isfinite(v) for v in losses.values()) and losses[4] < losses[1]

    # Each checkpoint has the adapter (for --resume) and merged/ (a plain model) that equals
    # PEFT's own merge and differs from the base exactly on the adapted projections.
    ckpt = run / "checkpoint-4"
    assert (ckpt / "adapter_config.json").is_file() and not (ckpt / "merged" / "adapter_config.json").exists()
    assert model_dir(ckpt) == ckpt / "merged"
    merged = _weights(model_dir(ckpt))
    reference = PeftModel.from_pretrained(
        Qwen2AudioForConditionalGeneration.from_pretrained(cfg.model_name_or_path),
        ckpt).merge_and_unload().state_dict()
    assert set(merged) == set(base) == set(reference)
    for key in base:
        torch.testing.assert_close(merged[key], reference[key])
    changed = {k for k in base if not torch.equal(merged[k], base[k])}
    assert changed and all(".language_model." in k and k.endswith("proj.weight") for k in changed)
    final = _weights(run / "final")
    assert all(torch.equal(final[k], merged[k]) for k in merged)  # final = merged last step
    assert (run / "final" / "adapter" / "adapter_config.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("use_peft", [False, True], ids=["full", "lora"])
def test_resume_continues_steps_and_data_order(tiny_setup, use_peft):
    """Interrupted after step 3 (last checkpoint at 2), resumed: the same steps, losses and
    weights as an uninterrupted run (for full SFT this catches transformers 5.23 resuming from
    the initial weights: its checkpoints use Qwen2-Audio's legacy key names)."""
    from transformers import TrainerCallback

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                control.should_training_stop = True

    tag = "lora" if use_peft else "full"
    full = _cfg(tiny_setup, f"straight-{tag}", max_steps=6, use_peft=use_peft, lora_dropout=0.1)
    sft.run_sft(full)
    cut = replace(full, output_dir=str(tiny_setup["root"] / f"resumed-{tag}"))
    sft.run_sft(cut, callbacks=[StopAt()])
    assert sorted(_losses(cut.output_dir)) == [1, 2, 3]
    with pytest.raises(RunDirError, match="--resume"):
        sft.run_sft(cut)  # a second run into the same folder must ask for --resume
    metrics = sft.run_sft(cut, resume=True)

    assert metrics["global_step"] == 6
    a, b = _losses(full.output_dir), _losses(cut.output_dir)
    assert sorted(b) == [1, 2, 3, 4, 5, 6]  # step 3's row from the lost history was replaced
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6), step
    wa, wb = _weights(Path(full.output_dir) / "final"), _weights(Path(cut.output_dir) / "final")
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6)
    launches = json.loads((Path(cut.output_dir) / "provenance.json").read_text())["launches"]
    assert len(launches) == 2  # the first launch's record survives the resume


class Killed(BaseException):
    """A kill at a named point of a save (BaseException: no handler of the Trainer catches it)."""


@pytest.mark.slow
@pytest.mark.parametrize("point, keep", [("before-save", "all"), ("during-save", "all"), ("after-save", "all"),
                                         ("during-final", "all"), ("during-save", "newest")])
def test_a_kill_at_each_point_of_a_save_resumes_to_the_same_weights(tiny_setup, monkeypatch, point, keep):
    """Killed at step 4 of 4 (checkpoints at 2 and 4): before the save, inside it (weights
    written, optimizer not: checkpoint-4 is incomplete and skipped with a warning), after it (the
    run's training is over: --resume writes final/ without training) and inside final/'s save
    (only .final.partial/ exists). Each resumed run ends with the uninterrupted run's weights; a
    further --resume does nothing. With keep_optimizer_state "newest" the kill inside step 4's save
    finds checkpoint-2's optimizer state still there (it is pruned only once checkpoint-4 is complete)."""
    import transformers
    from transformers import TrainerCallback


    ref_dir = tiny_setup["root"] / "kill-reference"
    if not (ref_dir / "final").is_dir():
        sft.run_sft(_cfg(tiny_setup, "kill-reference"))
    cut = _cfg(tiny_setup, f"kill-{point}-{keep}", keep_optimizer_state=keep)

    class KillAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if point == "before-save" and state.global_step == 4:
                raise Killed

        def on_save(self, args, state, control, **kwargs):
            if point == "after-save" and state.global_step == 4:
                raise Killed

    original_opt, original_save = transformers.Trainer._save_optimizer_and_scheduler, transformers.Trainer.save_model

    def save_opt(self, output_dir):
        if point == "during-save" and self.state.global_step == 4:
            raise Killed
        return original_opt(self, output_dir)

    def save_model(self, output_dir=None, _internal_call=False):
        original_save(self, output_dir, _internal_call)
        if point == "during-final" and output_dir and Path(output_dir).name == ".final.partial":
            raise Killed

    monkeypatch.setattr(transformers.Trainer, "_save_optimizer_and_scheduler", save_opt)
    monkeypatch.setattr(transformers.Trainer, "save_model", save_model)
    with pytest.raises(Killed):
        sft.run_sft(cut, callbacks=[KillAt()])
    monkeypatch.undo()
    run = Path(cut.output_dir)
    assert not (run / "final").exists()
    if point == "during-save":
        assert (run / "checkpoint-4" / "model.safetensors").is_file()
        assert not (run / "checkpoint-4" / "trainer_state.json").exists()
        with pytest.warns(UserWarning, match="checkpoint-4: not a complete checkpoint"):
            metrics = sft.run_sft(cut, resume=True)
        assert metrics["global_step"] == 4 and "final_from_checkpoint" not in metrics
    else:
        metrics = sft.run_sft(cut, resume=True)
        trained = point == "before-save"
        assert metrics["global_step"] == 4 and ("final_from_checkpoint" not in metrics) == trained
    assert not (run / ".final.partial").exists()
    assert [r["step"] for r in read_metrics(run) if "loss" in r] == [1, 2, 3, 4]
    wa, wb = _weights(ref_dir / "final"), _weights(run / "final")
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6)
    stamp = (run / "final" / "model.safetensors").stat().st_mtime_ns
    assert sft.run_sft(cut, resume=True)["nothing_to_do"]
    assert (run / "final" / "model.safetensors").stat().st_mtime_ns == stamp
    if keep == "newest":  # weights in every checkpoint, the optimizer state in the newest only
        assert (run / "checkpoint-2" / "model.safetensors").is_file()
        assert (not (run / "checkpoint-2" / "optimizer.pt").exists()
                and (run / "checkpoint-4" / "optimizer.pt").is_file())


@pytest.mark.slow
def test_cli_under_accelerate_two_cpu_processes(tiny_setup, tmp_path):
    config = REPO / "recipes" / "accelerate" / "cpu-2proc.yaml"
    if not config.is_file():
        pytest.skip(f"{config} not written yet")
    recipe = tmp_path / "r.yaml"
    cfg = _cfg(tiny_setup, "ddp", per_device_train_batch_size=2, max_steps=3, save_steps=3)
    recipe.write_text("\n".join(f"{k}: {v}" for k, v in {
        "model_name_or_path": cfg.model_name_or_path, "train_data": cfg.train_data,
        "train_audio_dir": cfg.train_audio_dir, "learning_rate": 1e-3, "per_device_train_batch_size": 2,
        "max_steps": 3, "save_steps": 3, "logging_steps": 1}.items()) + "\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with socket.socket() as sock:  # a free port: another 2-process test may be running
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
         "--main_process_port", str(port), "-m", "aqa_core", "sft",
         "--recipe", str(recipe), "--output-dir", cfg.output_dir],
        capture_output=True, text=True, env=env, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    run = Path(cfg.output_dir)
    assert (run / "checkpoint-3" / "rng_state_1.pth").is_file(), "only one process ran"
    rows = read_metrics(run)
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]  # one writer, not one per process
    assert rows[0]["epoch"] == pytest.approx(0.5)  # 8 questions, 2 processes x 2 per device = 2 steps/epoch
    assert all(math.isfinite(r["loss"]) for r in rows if "loss" in r)
    assert _weights(run / "final")


@pytest.mark.slow
def test_a_final_folder_without_weights_is_refused(tiny_setup, monkeypatch):
    """Under ZeRO-3 without stage3_gather_16bit_weights_on_model_save, saving writes no weights
    file; save_final must not leave a final/ that looks finished and loads nothing."""
    import transformers

    original = transformers.Trainer.save_model

    def save_model(self, output_dir=None, _internal_call=False):
        original(self, output_dir, _internal_call)
        if output_dir and Path(output_dir).name == ".final.partial":
            (Path(output_dir) / "model.safetensors").unlink()  # what the ZeRO-3 save without 16-bit weights leaves

    monkeypatch.setattr(transformers.Trainer, "save_model", save_model)
    cfg = _cfg(tiny_setup, "no-weights", max_steps=1, save_steps=1)
    with pytest.raises(RunDirError, match="no model weights"):
        sft.run_sft(cfg)
    assert not (Path(cfg.output_dir) / "final").exists()
