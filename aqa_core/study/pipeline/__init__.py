"""The study's pipeline: its design (`aqa_core.study.design`) made into cached, timed stages
(`stages`), run by a generic runner (`runner`, whose cache key covers the code each stage runs:
`code`) with torch-loading stages forked from a stage server (`server`); the notebooks executed
with papermill (`execute`) and the functions they call to build and record what they show
(`notebooks`); `python -m aqa_core study` (`study`). The analysis modules of `aqa_core.study`
never import this package.
"""
