"""The study and the book. `design` declares the study once (rows x seeds x recipes x sweeps x
opt-in parts); `pipeline` runs it, cached (`python -m aqa_core study`); the analysis makes the
book's tables, figures and sentences from the files the runs wrote (`results`, `tables`,
`figures`, `findings`, `validity`, `listening`, `ablations`, `budget`, `subcategories`,
`lr_search`, `paper`, `report`, `display`), reading the design and never the pipeline.
"""
