"""aqa_core: the R1-AQA study (GRPO vs SFT for audio question answering) as a small library.

The paper's definitions and the file formats every stage shares are the top-level modules
(prompts, answers, rewards, audio, data, config, runs, audio_tower, tower_cache, files); each stage is a
subpackage: `train` (GRPO and SFT), `eval` (inference, sweeps, the MMAU scorer, statistics),
`mini` (the CPU-scale benchmark and model), `study` (runs the study, makes the book). The README
has the module map; `tests/test_layout.py` enforces which may import which.
"""

__version__ = "0.1.0"
