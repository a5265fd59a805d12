"""The mini scale, the embedded default: a synthetic audio-QA benchmark with the paper's train ->
test shift (`data`, `tasks`, `synth`) and a tiny Qwen2-Audio with a pretrained Whisper tiny.en
encoder, trained briefly into a base model (`model`). Built offline in minutes on a CPU.
"""
