"""Plain ``nn.Module`` architectures (no Lightning): one file per model, shared layers in ``blocks``."""
from musicfx.models.blocks import ECA, ResidualECABlock2d, SupervisedAttention2d, eca_kernel_size
from musicfx.models.musicecan import ECAUNet2d, MusicECAN

__all__ = ["ECA", "ECAUNet2d", "MusicECAN", "ResidualECABlock2d", "SupervisedAttention2d", "eca_kernel_size"]
