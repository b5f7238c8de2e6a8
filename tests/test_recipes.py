"""Every recipe in recipes/ runs one fast training step on the CPU, alone and with each CPU overlay."""
from __future__ import annotations

from pathlib import Path
from typing import List

import pytest
import torch

from musicfx.cli import main

REPO = Path(__file__).resolve().parents[1]
# Overlay folders hold partial configs that compose with a recipe (-c recipe.yaml -c overlay.yaml).
OVERLAY_FOLDERS = ("trainer", "logger", "data", "bleed")
RECIPES = sorted(p for p in (REPO / "recipes").rglob("*.yaml") if p.parent.name not in OVERLAY_FOLDERS)
FAST = [
    "--trainer.fast_dev_run=1",
    "--trainer.accelerator=cpu",
    "--data.init_args.num_workers=0",
    "--data.init_args.batch_size=2",
    "--data.init_args.segment=0.5",
]
# Paper-sized recipes, shrunk for one CPU step: the same code paths at a fraction of the width.
SHRINK = {
    "debleed/di_cae_paper.yaml": ["--model.init_args.model.init_args.n_fft=256",
                                  "--model.init_args.model.init_args.hop_length=64"],
    "separate/cycle_gan.yaml": [f"--model.init_args.{net}.init_args.widths=[8,16,32,64,128]"
                                for net in ("model", "remixer", "discriminator", "mix_discriminator")],
    "separate/bs_roformer.yaml": ["--model.init_args.model.init_args.dim=32", "--model.init_args.model.init_args.depth=1"],
    "separate/mel_band_roformer.yaml": ["--model.init_args.model.init_args.dim=32",
                                        "--model.init_args.model.init_args.depth=1"],
    "separate/open_unmix.yaml": ["--model.init_args.model.init_args.hidden_size=32"],
}


def test_there_are_recipes() -> None:
    names = {p.relative_to(REPO / "recipes").as_posix() for p in RECIPES}
    assert {
        "quickstart.yaml", "denoise/musicecan.yaml",
        "separate/cnn_mask.yaml", "separate/open_unmix.yaml", "separate/bs_roformer.yaml", "separate/wavegan.yaml",
        "debleed/t_unet.yaml", "debleed/f_unet.yaml", "debleed/df_unet.yaml", "debleed/di_cae.yaml",
        "automix/fxnorm.yaml", "automix/fxnorm_pretrain.yaml", "automix/wave_u_net.yaml", "automix/console.yaml",
    } <= names


@pytest.mark.parametrize("bleed", ["linear", "convolutive", "room", "mixed"])
def test_bleed_overlays_compose_with_a_debleed_recipe(bleed: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["fit", "-c", str(REPO / "recipes/debleed/t_unet.yaml"), "-c", str(REPO / f"recipes/bleed/{bleed}.yaml"),
            "-c", str(REPO / "recipes/trainer/cpu.yaml"), *FAST, f"--data.init_args.cache_dir={tmp_path / 'cache'}"]
    if bleed in ("room", "mixed"):
        args.append("--data.init_args.rooms=2")  # the bank's image-source responses cost ~1 s per room here
    assert main(args) == 0


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.relative_to(REPO / "recipes").as_posix())
def test_recipe_runs_one_step_on_cpu(recipe: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    shrink = SHRINK.get(recipe.relative_to(REPO / "recipes").as_posix(), [])
    assert main(["fit", "-c", str(recipe), "-c", str(REPO / "recipes/trainer/cpu.yaml"), *FAST, *shrink]) == 0


@pytest.mark.parametrize("overlay", ["trainer/bf16-mixed.yaml", "trainer/cpu.yaml", "trainer/accumulate.yaml",
                                     "trainer/warmup.yaml"])
def test_overlays_compose(overlay: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    args: List[str] = ["fit", "-c", str(REPO / "recipes/quickstart.yaml"), "-c", str(REPO / "recipes" / overlay), *FAST]
    assert main(args) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_gpu_mixed_precision_step(precision: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["fit", "-c", str(REPO / "recipes/quickstart.yaml"), "-c", str(REPO / "recipes/trainer/gpu.yaml"),
            "-c", str(REPO / f"recipes/trainer/{precision}.yaml"), "--trainer.fast_dev_run=2"]
    assert main(args) == 0


def test_print_config_shows_the_composed_recipe(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(REPO / "recipes/quickstart.yaml"), "-c", str(REPO / "recipes/trainer/bf16-mixed.yaml"),
              "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "musicfx.tasks.denoise.DenoiseTask" in printed and "bf16-mixed" in printed


def test_unknown_recipe_key_is_a_clear_error(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "recipes/quickstart.yaml").read_text().replace("segment: 1.0", "segmnet: 1.0"))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "-c", str(bad)])
    assert exit_info.value.code != 0
    assert "segmnet" in capsys.readouterr().err


def test_sample_rate_mismatch_between_model_and_data_is_one_clear_error(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["fit", "-c", str(REPO / "recipes/quickstart.yaml"), *FAST, "--data.init_args.sample_rate=16000"])
    assert code == 1
    err = capsys.readouterr().err
    assert "model.init_args.sample_rate is 22050 but data.init_args.sample_rate is 16000" in err


def test_predict_runs_on_the_fixed_test_scenes(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["predict", "-c", str(REPO / "recipes/quickstart.yaml"), *FAST, "--data.init_args.test_examples=4"]
    assert main(args) == 0


def test_default_root_dir_moves_checkpoints_and_logs_and_the_generator_is_announced_once(
        tmp_path, monkeypatch, recwarn) -> None:
    monkeypatch.chdir(tmp_path)
    fast = [arg for arg in FAST if "fast_dev_run" not in arg]  # fast_dev_run writes no checkpoint
    args = ["fit", "-c", str(REPO / "recipes/quickstart.yaml"), *fast, "--trainer.max_steps=1",
            "--trainer.limit_val_batches=1", "--trainer.max_time=null", f"--trainer.default_root_dir={tmp_path / 'mine'}"]
    assert main(args) == 0
    assert (tmp_path / "mine/checkpoints/last.ckpt").is_file()
    assert list((tmp_path / "mine/logs").glob("version_*/config.yaml"))  # the logger writes there too
    assert not (tmp_path / "runs").exists()  # nothing where the recipe's default_root_dir points
    announced = [w for w in recwarn if "built-in music generator" in str(w.message)]
    assert len(announced) == 1


def test_quickstart_epoch_is_its_step_budget() -> None:
    import yaml

    recipe = yaml.safe_load((REPO / "recipes/quickstart.yaml").read_text())
    data = recipe["data"]["init_args"]
    # One epoch is the whole run, so the progress bar shows the steps really left.
    assert data["train_examples"] == recipe["trainer"]["max_steps"] * data["batch_size"]


def test_workers_are_capped_at_the_usable_cores() -> None:
    from musicfx.data.sampling import usable_cores
    from musicfx.tasks.denoise import DenoiseData

    assert DenoiseData(num_workers=1000).num_workers == usable_cores() - 1
    assert DenoiseData(num_workers=0).num_workers == 0
