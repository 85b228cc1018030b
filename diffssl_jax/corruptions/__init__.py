"""Forward processes and their schedules, per example, in continuous time ``t ∈ [0, 1]``.

``schedules``: ``LinearVP``, ``CosineVP``, ``LogLinearVE``, ``make_schedule``.
``gaussian``: ``corrupt``, ``target``, ``x0_from_prediction``, ``prediction_from_x0``.
Import the submodules explicitly (``from diffssl_jax.corruptions import schedules``).
"""
