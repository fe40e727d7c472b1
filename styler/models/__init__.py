"""Networks: the feed-forward generator and the PatchGAN discriminator."""

from styler.models.discriminator import PatchDiscriminator
from styler.models.generator import Generator

__all__ = ["Generator", "PatchDiscriminator"]
