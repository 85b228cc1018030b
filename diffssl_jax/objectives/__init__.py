"""Training objectives, per example (lift with ``jax.vmap``).

``denoising``: ``denoising_loss`` and ``loss_weight`` (weightings ``none``, ``min_snr``,
``edm``). Import the submodules explicitly.
"""
