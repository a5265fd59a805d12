"""aqa_core: the R1-AQA study (GRPO vs SFT for audio question answering) as a small library."""

__version__ = "0.1.0"
