"""The study and the book: runs every stage of the mini study, cached (`plan`, `stages`;
`python -m aqa_core study`), and makes the book's tables, figures and sentences from the files
the runs wrote (`notebook`, `results`, `tables`, `figures`, `findings`, `paper`, `report`,
`display`).
"""
