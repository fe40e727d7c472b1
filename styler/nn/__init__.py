"""Networks: the feed-forward generator and the PatchGAN discriminator."""

from styler.nn.discriminator import PatchDiscriminator
from styler.nn.generator import Generator

__all__ = ["Generator", "PatchDiscriminator"]
