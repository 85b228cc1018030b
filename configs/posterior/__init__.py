"""Inverse-problem configs for `launch/sample.py --problem=...` (the prior comes from --workdir).

Every problem key, its meaning and unit, is in `common.get_problem_config`.
"""
