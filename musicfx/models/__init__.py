"""Plain ``nn.Module`` architectures (no Lightning): one file per model, shared layers in ``blocks``.

Import a model from its module (``musicfx.models.open_unmix.OpenUnmix``) or from here.
"""
from musicfx.models.blocks import ECA, ResidualECABlock2d, SupervisedAttention2d, eca_kernel_size
from musicfx.models.bs_roformer import BSRoFormer
from musicfx.models.cnn_mask import CNNSoftMask
from musicfx.models.console import MixingConsole
from musicfx.models.df_unet import DFUNet
from musicfx.models.di_cae import DICAE
from musicfx.models.f_unet import FUNet
from musicfx.models.fxnorm_automix import FxNormAutomix
from musicfx.models.mel_band_roformer import MelBandRoFormer
from musicfx.models.msst import load_msst
from musicfx.models.musicecan import ECAUNet2d, MusicECAN
from musicfx.models.open_unmix import OpenUnmix
from musicfx.models.t_unet import TUNet
from musicfx.models.wave_u_net import WaveUNet
from musicfx.models.wavegan import WaveGANDiscriminator, WaveGANGenerator, WaveGANRemixer

__all__ = [
    "BSRoFormer", "CNNSoftMask", "DFUNet", "DICAE", "ECA", "ECAUNet2d", "FUNet", "FxNormAutomix", "MelBandRoFormer",
    "MixingConsole", "MusicECAN", "OpenUnmix", "ResidualECABlock2d", "SupervisedAttention2d", "TUNet",
    "WaveGANDiscriminator", "WaveGANGenerator", "WaveGANRemixer", "WaveUNet", "eca_kernel_size", "load_msst",
]
