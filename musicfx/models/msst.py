"""Checkpoints of Music-Source-Separation-Training (ZFTurbo/Music-Source-Separation-Training, "MSST").

MSST shares BS-RoFormer and Mel-Band RoFormer checkpoints in the ``bs-roformer`` 0.3.x layout, each with a
YAML config whose ``model:`` section holds the network's constructor arguments, ``training:`` the stem names
(``instruments``, or one ``target_instrument`` for single-stem models) and ``audio:`` the sample rate.
:func:`load_msst` turns such a pair into a :class:`~musicfx.models.bs_roformer.BSRoFormer` or
:class:`~musicfx.models.mel_band_roformer.MelBandRoFormer`; ``musicfx separate --ckpt FILE --config YAML``
runs it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
import yaml

from musicfx.errors import ConfigError
from musicfx.models.bs_roformer import BandRoFormer, BSRoFormer
from musicfx.models.mel_band_roformer import MelBandRoFormer

__all__ = ["load_msst", "read_msst_config"]


class _ConfigLoader(yaml.SafeLoader):
    """Safe YAML plus ``!!python/tuple``, which MSST's configs use for ``freqs_per_bands``."""


_ConfigLoader.add_constructor(
    "tag:yaml.org,2002:python/tuple", lambda loader, node: tuple(loader.construct_sequence(node, deep=True))
)


def read_msst_config(path: Union[str, Path]) -> Dict[str, Any]:
    """An MSST YAML config as a dict (``!!python/tuple`` read as tuples, nothing else executed)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config not found")
    try:
        config = yaml.load(path.read_text(), Loader=_ConfigLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not a readable YAML config ({error})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise ConfigError(f"{path}: an MSST config needs a 'model:' section")
    return config


def load_msst(
    ckpt: Union[str, Path], config: Union[str, Path, Dict[str, Any]], model_type: Optional[str] = None
) -> BandRoFormer:
    """A musicfx model with the weights of an MSST BS-RoFormer / Mel-Band RoFormer checkpoint.

    Args:
        ckpt: the checkpoint (``.ckpt`` / ``.pth``: a state dict, or one under ``state_dict`` / ``model``).
        config: its YAML config (path or the parsed dict).
        model_type: ``"bs_roformer"`` or ``"mel_band_roformer"`` (MSST's ``--model_type``); default: from the
            config (``num_bands`` means Mel-Band RoFormer).

    Returns:
        The model in eval mode, its ``sources`` the config's stems.
    """
    settings = config if isinstance(config, dict) else read_msst_config(config)
    model_config = dict(settings["model"])
    kind = model_type or ("mel_band_roformer" if "num_bands" in model_config else "bs_roformer")
    if kind not in ("bs_roformer", "mel_band_roformer"):
        raise ConfigError(f"model_type must be bs_roformer or mel_band_roformer, got {kind!r}")
    training = settings.get("training") or {}
    target = training.get("target_instrument")
    stems = int(model_config.get("num_stems", 1))
    if target and stems == 1:
        sources = [str(target)]
    else:
        sources = [str(name) for name in training.get("instruments") or []]
        if len(sources) != stems:
            sources = sources[:stems] if len(sources) > stems else [f"stem{i}" for i in range(stems)]
    sample_rate = int((settings.get("audio") or {}).get("sample_rate", 44100))
    path = Path(ckpt)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if kind == "mel_band_roformer":
        return MelBandRoFormer.from_mel_band_roformer(state, sources=sources, sample_rate=sample_rate, **model_config)
    return BSRoFormer.from_bs_roformer(state, sources=sources, sample_rate=sample_rate, **model_config)
