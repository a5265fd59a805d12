"""GPU memory per device and compute per step of GRPO at full scale (the paper recipe on
Qwen2-Audio-7B-Instruct under DeepSpeed ZeRO-3): the one estimator, which the book's full-scale
page (through `aqa_core.study.report`) and `scripts/bench_train.py --estimate` both print.
Order-of-magnitude arithmetic, explained line by line in docs/full_scale_estimate.md; nothing
here was measured on a GPU.

>>> est = grpo_zero3_estimate()
>>> round(est["static_gb"], 2), est["prompts_per_step"]
(18.45, 16)
"""
from __future__ import annotations


#: Qwen2-Audio-7B-Instruct's shape, from its published config (not re-checked offline here):
#: Qwen-7B text model, Whisper-large-v3-shaped audio encoder with a 30 s window.
QWEN2_AUDIO_7B = dict(
    params=8.2e9,  # the paper's figure; these shapes count ~8.4e9 with untied embeddings
    hidden=4096, layers=32, kv_heads=32, head_dim=128, intermediate=11008, vocab=156032,
    enc_hidden=1280, enc_layers=32, enc_ffn=5120, enc_positions=1500,
)


def grpo_zero3_estimate(world: int = 8, completions_per_device: int = 8, grad_accum: int = 2,
                        num_generations: int = 8, prompt_tokens: int = 350, completion_tokens: int = 512,
                        m: dict = QWEN2_AUDIO_7B) -> dict:
    """GPU memory per device for recipes/grpo/paper.yaml under ZeRO-3 (GB = 1e9 bytes), and
    the rollout volume. `prompt_tokens` ~350 is a 10 s AVQA clip (250 audio tokens) plus
    ~100 template/question tokens; a 30 s clip gives ~850. Order-of-magnitude arithmetic:
    bf16 activations kept for backward (no checkpointing, SDPA attention, so no seq^2 term)."""
    gb = 1e9
    n = m["params"]
    seq = prompt_tokens + completion_tokens
    tokens = completions_per_device * seq  # one micro-batch
    h, i = m["hidden"], m["intermediate"]
    # per token and layer: attention (norm in, normed, q, k, v, attention out) ~6h, residual h;
    # SwiGLU MLP: norm in, normed (2h), gate, up, act(gate), gate*up (4i); 2 bytes each
    lm_act = tokens * m["layers"] * 2 * (7 * h + 2 * h + 4 * i)
    eh = m["enc_hidden"]  # the encoder sees the whole 30 s window (1500 positions) for every row
    enc_act_per_row = m["enc_positions"] * m["enc_layers"] * 2 * (7 * eh + 2 * eh + 2 * m["enc_ffn"])
    enc_act = completions_per_device * enc_act_per_row
    # with share_audio_encoding (the default) a micro-batch encodes each distinct clip once: TRL
    # shuffles one generation batch (grad_accum prompts x G) into grad_accum micro-batches
    distinct_clips = min(completions_per_device, grad_accum * completions_per_device // num_generations)
    kv_per_token = 2 * m["layers"] * m["kv_heads"] * m["head_dim"] * 2
    gen_rows = completions_per_device * grad_accum  # TRL generates one optimizer step's completions at once
    est = {
        "weights_gb": 2 * n / world / gb,  # bf16 policy weights, sharded
        "grads_gb": 2 * n / world / gb,  # bf16 gradients, sharded
        "optimizer_gb": 12 * n / world / gb,  # fp32 master weights and Adam's two moments, sharded
        "policy_states_gb": 16 * n / world / gb,  # the three above
        "reference_gb": 2 * n / world / gb,  # frozen bf16 copy, sharded
        "zero3_live_params_gb": 2 * 1e9 / gb,  # stage3_max_live_parameters 1e9 in bf16
        "lm_activations_gb": lm_act / gb,
        "encoder_activations_gb": enc_act / gb,
        "encoder_activations_shared_gb": distinct_clips * enc_act_per_row / gb,
        "generation_gathered_weights_gb": 2 * n / gb,  # ds3_gather_for_generation: the whole bf16 model
        "kv_cache_gb": gen_rows * seq * kv_per_token / gb,
        "logits_if_materialised_gb": tokens * m["vocab"] * 4 / gb,  # avoided by TRL 1.16's fused LM head
    }
    est["train_peak_gb"] = (est["policy_states_gb"] + est["reference_gb"] + est["zero3_live_params_gb"]
                            + est["lm_activations_gb"] + est["encoder_activations_shared_gb"])
    est["train_peak_unshared_encoder_gb"] = (est["train_peak_gb"] - est["encoder_activations_shared_gb"]
                                             + est["encoder_activations_gb"])
    est["generation_peak_gb"] = (est["policy_states_gb"] + est["reference_gb"] + est["generation_gathered_weights_gb"]
                                 + est["kv_cache_gb"])
    est["static_gb"] = est["policy_states_gb"] + est["reference_gb"]  # before activations and gathers
    est["offload_train_peak_gb"] = est["train_peak_gb"] - est["policy_states_gb"] - est["reference_gb"]
    est["offload_host_ram_gb_per_node"] = (16 + 2) * n / gb  # policy states + reference, all ranks, on the host
    lm_params = n - 0.64e9
    per_step_completions = world * completions_per_device * grad_accum
    est.update({
        "completions_per_step": per_step_completions,
        "prompts_per_step": per_step_completions // 8,
        "generated_tokens_per_step_max": per_step_completions * completion_tokens,
        # decode: 2 FLOPs per LM parameter per token; training: 6 per parameter per token (policy)
        # plus 2 for the reference pass; encoder: every row re-encodes its 30 s window
        "rollout_decode_tflop_per_gpu_step_max": 2 * lm_params * per_step_completions * completion_tokens / world / 1e12,
        "train_tflop_per_gpu_step": (6 + 2) * n * per_step_completions * seq / world / 1e12,
        # decoding is memory-bound: each new token reads the whole gathered bf16 model from HBM
        "min_decode_seconds_per_step_at_2tbs": completion_tokens * 2 * n / 2e12,
        "train_seconds_per_step_at_125tflops": (6 + 2) * n * per_step_completions * seq / world / 125e12,
    })
    return est


def print_estimate(est: dict) -> None:
    print("paper recipe (recipes/grpo/paper.yaml), ZeRO-3 over 8 GPUs, per device:")
    for k, v in est.items():
        print(f"  {k:<36} {v:>12,.2f}" if isinstance(v, float) else f"  {k:<36} {v:>12,}")
