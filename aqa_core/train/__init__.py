"""Training: the GRPO and SFT runners on TRL/PEFT/accelerate (`python -m aqa_core grpo|sft`).

`grpo` (the recipe, the R1-AQA objective mapped onto TRL, the run), `grpo_trainer` (TRL's
GRPOTrainer with the audio in every pass), `sft` (full or LoRA SFT with prompt <1>), `collate`
(the SFT collator: audio in, loss on the answer only), `lora` (the LoRA config and merged
models), `common` (what both runners share: precision, trl_args, metrics, resume, `final/`),
`estimate` (GPU memory and compute per step at full scale).
"""
