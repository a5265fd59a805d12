"""Evaluation: batched MMAU-style inference, checkpoint sweeps and the statistics of a score.

`evaluate` (`python -m aqa_core evaluate`), `sweep` (every checkpoint of a run, with honest
selection), `mmau` (the official MMAU scorer, byte for byte), `mmau_versions` (which test-mini
version a file is), `stats` (Wilson intervals, McNemar, the paired bootstrap). A sweep replays
a frozen audio tower's outputs across checkpoints with `aqa_core.tower_cache`.
"""
