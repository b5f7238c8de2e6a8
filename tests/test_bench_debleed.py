"""benchmarks/bench_debleed.py's comparison tools: steps per model, the resumable training, the oracle row."""
from __future__ import annotations

import pytest
import torch

from musicfx.errors import MusicfxError


@pytest.fixture(scope="module")
def bench(import_benchmark):
    return import_benchmark("bench_debleed")


def test_model_steps_per_architecture_and_per_model(bench) -> None:
    models = ["t_unet", "t_unet_paper", "f_unet", "f_unet_paper", "di_cae"]
    steps = bench.model_steps(models, 10, ["t_unet=300", "f_unet_paper=50"])
    # An architecture name sets both of its variants; a variant's own name only that one.
    assert steps == {"t_unet": 300, "t_unet_paper": 300, "f_unet": 10, "f_unet_paper": 50, "di_cae": 10}
    assert bench.model_steps(["df_unet"], None, []) == {"df_unet": None}  # None: the time budget
    for bad in ("t_unet", "t_unet=0", "nonet=3", "f_unet=x"):
        with pytest.raises(MusicfxError, match="--model-steps"):
            bench.model_steps(models, None, [bad])


def test_oracle_magnitudes_is_the_ceiling_of_magnitude_models(bench) -> None:
    g = torch.Generator().manual_seed(0)
    sources = 0.1 * torch.randn(2, 4, bench.RATE, generator=g)
    # Without bleed the oracle returns the sources (clean magnitude, clean phase).
    torch.testing.assert_close(bench.oracle_magnitudes(sources, sources), sources, atol=1e-5, rtol=0)
    matrix = torch.eye(4) + 0.3 * torch.rand(4, 4, generator=g)
    mics = matrix @ sources
    oracle = bench.oracle_magnitudes(mics, sources)
    assert oracle.shape == mics.shape
    assert bench.clip_sdr(oracle, sources).mean() > bench.clip_sdr(mics, sources).mean() + 3.0


def test_train_saves_and_a_rerun_loads_instead_of_training(bench, tmp_path, monkeypatch) -> None:
    import lightning.pytorch as pl

    args = dict(name="t_unet", budget=60.0, segment=0.25, batch_size=2, cache_dir=tmp_path / "cache", quick=True,
                steps=2, clip=1.0, save_dir=tmp_path / "models")
    model, info = bench.train(**args)
    assert info["steps"] == 2 and "loss_first" in info and "loss_last" in info
    assert (tmp_path / "models" / "t_unet.pt").exists()

    def no_training(*_, **__):
        raise AssertionError("a saved model with the same settings must be loaded, not trained again")

    monkeypatch.setattr(pl, "Trainer", no_training)
    again, info_again = bench.train(**args)
    assert info_again == info
    for (name, value), (_, loaded) in zip(model.state_dict().items(), again.state_dict().items()):
        torch.testing.assert_close(loaded, value, msg=name)
    with pytest.raises(AssertionError, match="must be loaded"):  # other settings: trained afresh
        bench.train(**{**args, "steps": 3})
