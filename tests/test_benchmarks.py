"""Smoke runs of the denoise benchmarks with tiny arguments, checking the numbers they report make sense."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# The scripts import their shared helpers as `common`, the way Python finds them when run as scripts.
sys.path.insert(0, str(BENCHMARKS))

import bench_denoise_quality as quality  # noqa: E402
import bench_denoise_speed as speed  # noqa: E402
import common  # noqa: E402


@pytest.fixture(scope="module")
def tiny_stereo_checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny stereo 16 kHz MusicECAN: exercises resampling and channel mapping, not quality."""
    from musicfx.tasks.denoise import DenoiseTask

    # Built from its recipe, the checkpoint stores the recipe and musicfx.load reads it as data.
    model = {"class_path": "musicfx.models.MusicECAN",
             "init_args": {"channels": 2, "n_fft": 256, "hop_length": 64, "widths": [4, 8], "filter_widths": [4, 8]}}
    task = DenoiseTask.from_config({"model": model, "sample_rate": 16000, "channels": 2})
    return common.save_untrained_checkpoint(task, tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def test_markdown_table_aligns_columns():
    table = common.markdown_table(["name", "value"], [["a", "1.00"], ["longer", "22.50"]])
    lines = table.splitlines()
    assert lines[0] == "| name   | value |"
    assert lines[1] == "| ------ | ----: |"
    assert lines[3] == "| longer | 22.50 |"


def test_recipe_models_are_the_recipes():
    recipe = common.load_recipe(common.QUICKSTART_RECIPE)
    quick = common.recipe_model(recipe)
    default = common.recipe_model(common.load_recipe(common.DEFAULT_RECIPE))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    settings = recipe["model"]["init_args"]["model"]["init_args"]
    assert (quick.n_fft, quick.hop_length) == (settings["n_fft"], settings["hop_length"])
    assert count(default) == 2_074_668  # the documented default MusicECAN, mono
    assert count(quick) < count(default) / 5


def test_test_set_is_fixed_and_not_silent(shared_data):
    cache = quality.AudioCache(shared_data, 22050, 1)
    excerpts = quality.excerpt_list(4.0)
    assert len(excerpts) == 19 and {x.kind for x in excerpts} == {"mix", "stem", "orchestra"}
    mix = quality.load_excerpt(excerpts[1], cache)  # the mixture from 4 s to 8 s
    assert mix.shape == (1, 4 * 22050)
    summed = sum(cache(f"{quality.SISEC}/{name}.wav")[:, 4 * 22050 : 8 * 22050] for name in quality.SISEC_STEMS)
    assert torch.allclose(mix, summed)
    drums = next(x for x in excerpts if x.name.startswith("nz-tour drums"))
    drums_file = cache(f"{quality.SISEC}/drums.wav")
    assert torch.equal(quality.load_excerpt(drums, cache), drums_file[:, 6 * 22050 : 10 * 22050])
    orchestra = quality.load_excerpt(excerpts[9], cache)
    assert orchestra.shape[-1] == 22050  # PHENICX recordings are 1 s long
    for noise in quality.noise_names():
        a = quality.make_noise(noise, 3, 1, 22050, cache)
        b = quality.make_noise(noise, 3, 1, 22050, cache)
        assert torch.equal(a, b) and a.abs().max() > 0
        assert not torch.equal(a, quality.make_noise(noise, 4, 1, 22050, cache))


def test_quality_smoke(shared_data, tiny_stereo_checkpoint, tmp_path, capsys):
    out = tmp_path / "quality.json"
    code = quality.main([
        "--shared", str(shared_data), "--ckpt", f"tiny={tiny_stereo_checkpoint}", "--seconds", "1",
        "--max-excerpts", "4", "--noise", "stationary", quality.KITCHEN, "--json", str(out), "--quiet",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Machine: ") and "torch " in printed
    assert "### SI-SDR improvement" in printed and " tiny |" in printed
    report = json.loads(out.read_text())
    assert report["settings"]["sample_rate"] == 16000 and report["settings"]["channels"] == 2
    assert [x["kind"] for x in report["excerpts"]] == ["mix", "stem", "orchestra", "orchestra"]
    noisy = torch.tensor(report["scores"]["noisy input"])
    assert noisy.shape == (2, 2, 4)
    # Mixing at an SNR and scoring the unprocessed input gives that SNR back, excerpt by excerpt.
    assert torch.allclose(noisy[:, 0], torch.zeros(2, 4), atol=0.3)
    assert torch.allclose(noisy[:, 1], torch.full((2, 4), 5.0), atol=0.3)
    # The spectral gate removes stationary noise from real music (about 7 dB at 0 dB SNR on the full set).
    assert report["si_sdri"]["spectral gate"]["stationary"]["0"] > 2.0
    assert all(math.isfinite(v) for v in torch.tensor(report["scores"]["tiny"]).flatten().tolist())
    assert report["overall"]["noisy input"] == pytest.approx(2.5, abs=0.2)


def test_quality_missing_data_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert quality.main(["--shared", str(missing)]) == 1
    assert str(missing) in capsys.readouterr().err


def test_speed_smoke(tmp_path, capsys):
    out = tmp_path / "speed.json"
    assert speed.main(["--quick", "--devices", "cpu", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Machine: ")
    for title in ("Training examples per second", "training steps per second", "Inference", "Peak memory"):
        assert title in printed
    report = json.loads(out.read_text())
    for row in report["pipeline"].values():
        assert row["examples_per_s"] > 0 and row["synthesis_examples_per_s"] > 0 and row["first_batch_s"] > 0
    training = report["training"]
    assert training["default MusicECAN (cpu)"]["parameters"] == 2_074_668
    assert all(row["steps_per_s"] > 0 for row in training.values())
    inference = report["inference"]
    assert set(inference) == {"quickstart (cpu)", "default (cpu)", "spectral gate (cpu)"}
    assert all(0 < row["rtf"] < 100 for row in inference.values())
    memory = report["memory"]["spectral-gate"]
    # A Python process with torch imported holds well over 100 MiB; a 4x longer file must not need more.
    assert all(mb > 100 for mb in memory["peak_mb"].values())
    assert 0.7 < memory["ratio_longest_to_shortest"] < 1.3


def test_test_file_is_a_quiet_sine_with_noise(tmp_path):
    from musicfx.audio.io import read_audio

    path = speed.write_test_file(tmp_path / "x.wav", 12.5, seed=3)
    audio, rate = read_audio(path)
    assert rate == 44100 and audio.shape == (2, int(12.5 * 44100))
    # RMS of a 0.1-amplitude sine (0.0707) plus white noise of 0.02: sqrt(0.005 + 0.0004).
    assert audio.square().mean().sqrt().item() == pytest.approx(math.sqrt(0.0054), rel=0.02)
    # Blocks are 10 s: the noise of the second block is not a repeat of the first.
    assert not torch.allclose(audio[:, :1000], audio[:, 441000:442000])
