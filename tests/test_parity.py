"""Parity with the reference implementations: openunmix 1.3.0, bs-roformer 0.3.10 (BSRoformer, MelBandRoformer).

The golden files in tests/data hold tiny reference models' weights, a real excerpt (sisec2011-nz-tour, the sum
of its stems) and the references' outputs, recorded by ``benchmarks/bench_parity.py --golden tests/data`` in the
peers' environment; they keep the parity tested where the peers are not installed. Where a peer imports, the
same conversions are also checked live on fresh random models.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any, Dict

import pytest
import torch

from musicfx.errors import ConfigError
from musicfx.models.bs_roformer import BSRoFormer
from musicfx.models.mel_band_roformer import MelBandRoFormer
from musicfx.models.open_unmix import OpenUnmix

DATA = Path(__file__).parent / "data"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TOLERANCE = 1e-4


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """``max(||a - b|| / ||b||, max|a - b| / max|b|)`` over the reference's length."""
    ours = ours[..., : theirs.shape[-1]].reshape(theirs.shape).double()
    theirs = theirs.double()
    difference = ours - theirs
    return max((difference.norm() / theirs.norm()).item(), (difference.abs().max() / theirs.abs().max()).item())


def golden(name: str) -> Dict[str, Any]:
    return torch.load(DATA / f"parity_{name}.pt", weights_only=True)


def _open_unmix(entry: Dict[str, Any], iterations: int) -> OpenUnmix:
    config = entry["config"]
    return OpenUnmix.from_openunmix(
        entry["state_dicts"], sample_rate=config["sample_rate"], hop_length=config["hop"],
        wiener_iterations=iterations, wiener_window=config["window"],
    )


def test_open_unmix_matches_the_golden_outputs():
    entry = golden("open_unmix")
    mix = entry["input"]
    for iterations in (0, 1):
        model = _open_unmix(entry, iterations)
        assert model.sources == tuple(entry["state_dicts"]) and model.wiener_iterations == iterations
        with torch.no_grad():
            assert relative_error(model.estimate_magnitudes(mix), entry["estimates"]) < TOLERANCE
            assert relative_error(model(mix), entry["outputs"][f"niter{iterations}"]) < TOLERANCE


def test_open_unmix_wiener_iteration_is_what_the_golden_output_needs():
    """The EM step changes the output well beyond the tolerance: a bypassed Wiener branch fails the parity."""
    entry = golden("open_unmix")
    outputs = entry["outputs"]
    assert relative_error(outputs["niter0"], outputs["niter1"]) > 100 * TOLERANCE
    model = _open_unmix(entry, 1)
    model.filter = lambda estimates, spec: torch.polar(estimates, spec.angle().unsqueeze(1))  # no EM
    with torch.no_grad():
        assert relative_error(model(entry["input"]), outputs["niter1"]) > 100 * TOLERANCE


def test_bs_roformer_matches_the_golden_output():
    entry = golden("bs_roformer")
    model = BSRoFormer.from_bs_roformer(entry["state_dict"], **entry["config"])
    assert model.channels == 2 and len(model.sources) == 2
    with torch.no_grad():
        assert relative_error(model(entry["input"]), entry["output"]) < TOLERANCE


def test_mel_band_roformer_matches_the_golden_output():
    entry = golden("mel_band_roformer")
    model = MelBandRoFormer.from_mel_band_roformer(entry["state_dict"], **entry["config"])
    with torch.no_grad():
        assert relative_error(model(entry["input"]), entry["output"]) < TOLERANCE


def test_bs_roformer_without_rotary_embeddings_misses_the_golden_output(monkeypatch):
    """RoPE is what positions the tokens: with it replaced by the identity the reference's output is lost."""
    from musicfx.models import bs_roformer

    entry = golden("bs_roformer")
    model = BSRoFormer.from_bs_roformer(entry["state_dict"], **entry["config"])
    monkeypatch.setattr(bs_roformer.RotaryEmbedding, "forward", lambda self, x: x)
    with torch.no_grad():
        assert relative_error(model(entry["input"]), entry["output"]) > 100 * TOLERANCE


def test_converters_reject_mismatched_configs():
    entry = golden("bs_roformer")
    with pytest.raises(ConfigError, match="does not match|is"):
        BSRoFormer.from_bs_roformer(entry["state_dict"], **dict(entry["config"], dim=12))
    with pytest.raises(ConfigError, match="linear_transformer_depth"):
        BSRoFormer.from_bs_roformer(entry["state_dict"], **dict(entry["config"], linear_transformer_depth=1))
    with pytest.raises(ConfigError, match="unknown"):
        BSRoFormer.from_bs_roformer(entry["state_dict"], **dict(entry["config"], not_a_key=1))
    with pytest.raises(ConfigError, match="source names"):
        BSRoFormer.from_bs_roformer(entry["state_dict"], sources=("vocals",), **entry["config"])
    with pytest.raises(ConfigError, match="no target name"):
        OpenUnmix.from_openunmix(next(iter(golden("open_unmix")["state_dicts"].values())))


# ------------------------------------------------------------------------------------ live, with the peers
def _peers_importable() -> bool:
    return importlib.util.find_spec("bs_roformer") is not None and importlib.util.find_spec("openunmix") is not None


@pytest.fixture(scope="module")
def bench():
    if not _peers_importable():
        pytest.skip("the reference packages are not installed (bash benchmarks/peers.sh; .venv-peers/bin/python)")
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_parity

        bench_parity.import_peers()
    finally:
        sys.path.remove(str(BENCHMARKS))
    return bench_parity


def test_live_open_unmix_parity(bench):
    config = dict(targets=("vocals", "bass", "other"), hidden=24, layers=2, n_fft=256, hop=64, max_bin=90, niter=1,
                  window=20, softmask=True, residual=True)
    mix = golden("open_unmix")["input"]
    reference = bench.umx_reference(config, mix, seed=3)
    ours = bench.convert("open_unmix", reference, config)
    assert (ours.wiener_softmask, ours.wiener_residual, ours.wiener_window) == (True, True, 20)
    with torch.no_grad():
        assert relative_error(ours(mix), reference(mix)[:, :3]) < TOLERANCE


@pytest.mark.parametrize("mel", [False, True], ids=["bs", "mel"])
def test_live_roformer_parity(bench, mel: bool):
    config = dict(dim=16, depth=2, stereo=True, num_stems=3, time_transformer_depth=2, freq_transformer_depth=1,
                  dim_head=8, heads=2, stft_n_fft=256, stft_win_length=256, stft_hop_length=64)
    config.update(dict(num_bands=16) if mel else dict(freqs_per_bands=(8,) * 8 + (65,)))
    mix = golden("open_unmix")["input"]
    reference = bench.roformer_reference(config, seed=4, mel=mel)
    ours = bench.convert("mel_band_roformer" if mel else "bs_roformer", reference, config)
    with torch.no_grad():
        assert relative_error(ours(mix), bench._as_stems(reference(mix), 1)) < TOLERANCE


# ------------------------------------------------------------------------- Music-Source-Separation-Training
def _msst_files(tmp_path: Path) -> tuple:
    """The golden BS-RoFormer as an MSST checkpoint + YAML (``!!python/tuple`` bands, as MSST writes them)."""
    entry = golden("bs_roformer")
    ckpt = tmp_path / "model_bs_roformer.ckpt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in entry["state_dict"].items()}}, ckpt)
    config = dict(entry["config"])
    bands = "\n".join(f"  - {w}" for w in config.pop("freqs_per_bands"))
    model = "\n".join(f"  {k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in config.items())
    yaml_path = tmp_path / "config_bs_roformer.yaml"
    yaml_path.write_text(
        "audio:\n  sample_rate: 44100\n  num_channels: 2\n"
        f"model:\n{model}\n  freqs_per_bands: !!python/tuple\n{bands}\n  flash_attn: true\n"
        "  multi_stft_resolutions_window_sizes: !!python/tuple\n  - 4096\n  - 2048\n"
        "training:\n  instruments:\n  - vocals\n  - other\n  target_instrument: null\n"
    )
    return entry, ckpt, yaml_path


def test_load_msst_checkpoint_and_yaml(tmp_path):
    from musicfx.models import load_msst

    entry, ckpt, yaml_path = _msst_files(tmp_path)
    model = load_msst(ckpt, yaml_path)
    assert isinstance(model, BSRoFormer) and model.sources == ("vocals", "other")
    with torch.no_grad():
        assert relative_error(model(entry["input"]), entry["output"]) < TOLERANCE
    with pytest.raises(ConfigError, match="model_type"):
        load_msst(ckpt, yaml_path, model_type="htdemucs")
    with pytest.raises(ConfigError, match="not found"):
        load_msst(tmp_path / "missing.ckpt", yaml_path)


def test_cli_separates_with_an_msst_checkpoint(tmp_path):
    from musicfx.audio.io import read_audio, write_audio
    from musicfx.cli import main

    entry, ckpt, yaml_path = _msst_files(tmp_path)
    song = tmp_path / "song.wav"
    audio = entry["input"][0].repeat(1, 4)  # 0.09 s: the CLI wants at least 0.05 s
    write_audio(song, audio, 44100)
    out = tmp_path / "out"
    assert main(["separate", str(song), "-o", str(out), "--ckpt", str(ckpt), "--config", str(yaml_path), "-q",
                 "--device", "cpu"]) == 0
    vocals, rate = read_audio(out / "song" / "vocals.wav")
    assert rate == 44100 and vocals.shape == audio.shape
    assert (out / "song" / "other.wav").is_file()
