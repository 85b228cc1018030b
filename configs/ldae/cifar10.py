"""l-DAE on CIFAR-10 (32x32x3) through tensorflow-datasets.

    python -m launch.train --config=configs/ldae/cifar10.py --workdir=runs/ldae_cifar10 \
        --config.data.data_dir=$HOME/tensorflow_datasets

The data must be prepared once as array_record (README, "Datasets"); the PCA basis is fitted
from 200,000 random 4x4 training patches (D = 48) when the recipe is built. Latent dim
d = 12: on a natural-image proxy downsampled to 32x32 (skimage astronaut, chelsea, coffee,
rocket) the top 12 of 48 components keep 97.6% of the 4x4x3 patch variance, the share the
paper's d = 32 of 768 keeps at 256 px (97.7% on the same images); it is also the d of the
paper's pixel tokenizer at 32x32 (C.5). A ViT-S-width network on 4x4 patches (64 tokens):
width 384, 6 heads, 12 blocks split 6 + 6 (the paper's symmetric split), adaLN on t;
AdamW with the paper's base lr 1e-4 x batch / 256, no weight decay, a quarter of the run as
warm-up then cosine (100 of 400 epochs, as C.2), batch 256, horizontal flips.

Variants (`:tiny`): a few steps of a small network (tests with mocked tfds data).
"""

from diffssl_jax.configs.base import parse_variants, shrink_for_tests
from diffssl_jax.configs.ldae import get_ldae_base_config
from diffssl_jax.configs.mae import shrink_vit_for_tests

STEPS_PER_EPOCH = 50_000 // 256


def get_config(arg: str | None = None):
    variants = parse_variants(arg, known=("tiny",))
    config = get_ldae_base_config()
    config.data.name = "cifar10"
    config.data.image_shape = (32, 32, 3)
    config.pipeline.random_flip = True
    config.corruption.patch_size = 4
    config.corruption.latent_dim = 12
    config.model.patch_size = 4
    config.model.hidden_size = 384
    config.model.depth = 12
    config.model.encoder_depth = 6
    config.model.num_heads = 6
    config.train.batch_size = 256
    config.optim.lr_peak = 1e-4 * 256 / 256
    config.optim.warmup_steps = 100 * STEPS_PER_EPOCH
    config.train.num_steps = 400 * STEPS_PER_EPOCH
    config.train.log_every_steps = 100
    config.train.checkpoint_every_steps = 5000
    if "tiny" in variants:
        shrink_for_tests(config)
        shrink_vit_for_tests(config)
        config.corruption.pca_num_patches = 512
        config.model.dtype = "float32"
        config.train.sample_every_steps = 0
    return config
