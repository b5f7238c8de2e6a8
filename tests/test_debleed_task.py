"""DebleedTask and BleedData: every model learns through the task, the t-UNet's matrix term, training-only
augmentation, and ``task.debleed`` on whole recordings (any rate, channels and length)."""
from __future__ import annotations

import json
import math
import warnings
from types import SimpleNamespace
from typing import Callable, Dict, List

import pytest
import torch
from torch import Tensor, nn

from musicfx.models.df_unet import DFUNet
from musicfx.models.di_cae import DICAE
from musicfx.models.f_unet import FUNet
from musicfx.models.t_unet import TUNet
from musicfx.tasks.debleed import BleedData, DebleedTask, fold_channels, unfold_channels

RATE = 8000
# Small enough to take a dozen steps in a few seconds on one shared CPU core.
TINY: Dict[str, Callable[[], nn.Module]] = {
    "t_unet": lambda: TUNet(num_tracks=4, widths=(8, 16, 32), head_width=32),
    "f_unet": lambda: FUNet(num_tracks=4, n_fft=128, hop_length=64, widths=(8, 16), bottleneck_width=16, dropout=0.0),
    "df_unet": lambda: DFUNet(num_tracks=4, widths=(8, 16), bottleneck_width=16, dilations=(1, 2), dropout=0.0),
    "di_cae": lambda: DICAE(num_tracks=4, n_fft=64, hop_length=32, widths=(8, 16), bottleneck=16),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _task(model: nn.Module, **kwargs) -> DebleedTask:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
        return DebleedTask(model, sample_rate=RATE, **kwargs)


def _data(tmp_path, **kwargs) -> BleedData:
    settings = dict(sample_rate=RATE, segment=0.5, batch_size=2, num_workers=0, generated_items=2,
                    generated_duration=2.0, train_examples=2, val_examples=2, test_examples=2,
                    cache_dir=str(tmp_path / "cache"))
    settings.update(kwargs)
    return BleedData(**settings)


@pytest.fixture(scope="module")
def raw_batch(tmp_path_factory) -> Dict[str, Tensor]:
    """The first fixed test batch of a tiny BleedData, as the DataLoader delivers it (stems + parameters)."""
    data = _data(tmp_path_factory.mktemp("bleed"))
    data.setup("test")
    return next(iter(data.test_dataloader()))


@pytest.fixture(scope="module")
def scene(raw_batch, tmp_path_factory) -> Dict[str, Tensor]:
    """That batch made into linear bleed scenes, as the task receives them (no augmentation: not training)."""
    data = _data(tmp_path_factory.mktemp("bleed"))
    return data.on_after_batch_transfer(dict(raw_batch), 0)


def _logged(task: DebleedTask) -> Dict[str, float]:
    """Make ``task.log`` record values in a dict (there is no trainer to log to)."""
    values: Dict[str, float] = {}

    def log(name: str, value, **kwargs) -> None:
        values[name] = float(torch.as_tensor(value).detach())

    task.log = log  # type: ignore[method-assign]
    return values


# --------------------------------------------------------------------------------------------------- data
def test_linear_scene_is_a_times_sources(raw_batch, scene) -> None:
    mics, targets, matrix = scene["mics"], scene["targets"], scene["mixing_matrix"]
    assert mics.shape == targets.shape == (2, 4, RATE // 2) and matrix.shape == (2, 4, 4)
    torch.testing.assert_close(matrix, raw_batch["gains"])
    torch.testing.assert_close(targets, raw_batch["stems"][:, :, 0])  # the clean sources at unit gain
    torch.testing.assert_close(mics, matrix @ targets, rtol=1e-5, atol=1e-6)
    off = matrix[:, ~torch.eye(4, dtype=torch.bool)]
    assert bool(((off >= 0.05) & (off <= 0.31)).all())
    diagonal = torch.diagonal(matrix, dim1=1, dim2=2)
    assert bool(((diagonal >= 0.6) & (diagonal <= 1.0)).all())


def test_remix_and_gains_apply_to_training_batches_only(raw_batch, tmp_path) -> None:
    data = _data(tmp_path)
    evaluation = data.on_after_batch_transfer(dict(raw_batch), 0)
    data.trainer = SimpleNamespace(training=True)  # what Lightning sets while it fits
    training = data.on_after_batch_transfer(dict(raw_batch), 0)
    data.trainer = SimpleNamespace(training=False)
    again = data.on_after_batch_transfer(dict(raw_batch), 0)
    torch.testing.assert_close(again["targets"], evaluation["targets"])
    # Per-stem gains U(0.5, 1.25) (and a remix across songs) change the clean targets of a training scene.
    assert not torch.allclose(training["targets"], evaluation["targets"])
    # The bleed itself is the same draw: the mics are still A times the (augmented) targets.
    torch.testing.assert_close(training["mics"], training["mixing_matrix"] @ training["targets"], rtol=1e-5, atol=1e-6)


def test_fold_and_unfold_channels_are_inverse() -> None:
    tracks = torch.randn(3, 4, 2, 50)
    folded = fold_channels(tracks)
    assert folded.shape == (6, 4, 50)
    torch.testing.assert_close(folded[1 * 2 + 1], tracks[1, :, 1])  # example 1, channel 1
    torch.testing.assert_close(unfold_channels(folded, 2), tracks)
    # The command line folds the same way (without importing the task module).
    from musicfx.debleed import per_channel

    def model(x: Tensor) -> Tensor:  # treats each example and track differently
        return x * torch.arange(1, x.shape[0] * x.shape[1] + 1).reshape(x.shape[0], x.shape[1], 1)

    torch.testing.assert_close(per_channel(model)(tracks), unfold_channels(model(fold_channels(tracks)), 2))


# ----------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", sorted(TINY))
def test_every_model_learns_through_the_task(name: str, scene) -> None:
    torch.manual_seed(0)
    task = _task(TINY[name](), optimizer=lambda params: torch.optim.Adam(params, lr=3e-3)).train()
    _logged(task)
    optimizer = task.configure_optimizers()
    first = float(task.training_step(scene, 0).detach())
    steps = 30 if name == "t_unet" else 12  # the t-UNet is cheap and learns through a 4 x 4 matrix
    for step in range(steps):
        loss = task.training_step(scene, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    last = float(task.training_step(scene, steps).detach())
    # Measured: t-UNet 0.20 -> 0.07, f-UNet 0.019 -> 0.013, df-UNet 0.019 -> 0.012, DI-CAE 0.046 -> 0.019.
    assert math.isfinite(first) and last < 0.85 * first, f"{name}: loss {first:.4f} -> {last:.4f}"


def test_t_unet_matrix_term_is_added_on_linear_bleed(scene) -> None:
    torch.manual_seed(0)
    model = TUNet(num_tracks=4, widths=(8, 16, 32), head_width=32)
    with torch.no_grad():  # a non-identity estimate, so both terms are non-trivial
        model.out.bias.fill_(0.3)
    weighted, plain = _task(model, matrix_weight=2.0), _task(model, matrix_weight=0.0)
    logs, plain_logs = _logged(weighted), _logged(plain)
    total = weighted.training_step(scene, 0)
    main = plain.training_step(scene, 0)
    with torch.no_grad():
        error = (model.mixing_matrix(scene["mics"]) - scene["mixing_matrix"]).abs().mean()
    assert float(error) > 0.01
    torch.testing.assert_close(total, main + 2.0 * error)
    assert logs["train/loss_matrix"] == pytest.approx(float(error), rel=1e-5)
    assert "train/loss_matrix" not in plain_logs
    # The term reaches the head: its gradient differs from the waveform loss's alone.
    total.backward()
    with_matrix = model.out.bias.grad.clone()
    model.zero_grad()
    main.backward()
    assert not torch.allclose(with_matrix, model.out.bias.grad)
    # Models without a matrix (and scenes without one) train on the waveform loss alone.
    no_matrix = {key: value for key, value in scene.items() if key != "mixing_matrix"}
    unweighted = _task(model)
    _logged(unweighted)
    torch.testing.assert_close(unweighted.training_step(no_matrix, 0), main)


def test_validation_logs_sdr_per_track(scene) -> None:
    task = _task(TUNet(num_tracks=4, widths=(8, 16, 32), head_width=32)).eval()  # untrained: the identity
    logs = _logged(task)
    with torch.no_grad():
        task.validation_step(scene, 0)
    for name in ("vocals", "drums", "bass", "other"):
        # The identity scores exactly what the unprocessed microphones score.
        assert logs[f"val/sdr_{name}"] == pytest.approx(logs[f"val/sdr_{name}_unprocessed"], abs=1e-4)
    assert logs["val/sdri"] == pytest.approx(0.0, abs=1e-4)
    assert -10.0 < logs["val/sdr"] < 30.0


# ----------------------------------------------------------------------------------------------- debleed()
class _Unmix(nn.Module):
    """Undo a known mixing matrix: the perfect debleed model for ``mics = A @ sources``."""

    def __init__(self, matrix: Tensor) -> None:
        super().__init__()
        self.register_buffer("matrix", matrix)
        self.calls: List[tuple] = []

    def forward(self, mics: Tensor) -> Tensor:
        self.calls.append(tuple(mics.shape))
        return torch.linalg.solve(self.matrix, mics)


def _tones(tracks: int, channels: int, seconds: float, rate: int) -> Tensor:
    """Band-limited test tracks ``(tracks, channels, time)``: a different pair of tones per track and channel."""
    t = torch.arange(int(seconds * rate)) / rate
    freqs = 150.0 + 170.0 * torch.arange(tracks * channels * 2).reshape(tracks, channels, 2, 1)
    return 0.2 * torch.sin(2 * math.pi * freqs * t).sum(dim=2)


@pytest.mark.parametrize("channels", [1, 2])
def test_debleed_round_trip_at_another_rate(channels: int) -> None:
    matrix = torch.tensor([[1.0, 0.3, 0.2, 0.1], [0.25, 0.9, 0.1, 0.2], [0.1, 0.2, 0.8, 0.3], [0.3, 0.1, 0.2, 0.7]])
    model = _Unmix(matrix)
    task = _task(model)
    rate = 22050  # the model runs at 8 kHz: resampled there and back
    sources = _tones(4, channels, 2.3, rate)
    mics = torch.einsum("ij,jct->ict", matrix, sources)
    out = task.debleed(mics if channels > 1 else mics[:, 0], rate, segment=0.5, overlap=0.25)
    assert out.shape == (mics.shape if channels > 1 else mics[:, 0].shape)
    out = out if channels > 1 else out[:, None]
    error = (out - sources)[..., 200:-200]  # the resampler's edges
    snr = 10 * torch.log10(sources[..., 200:-200].square().sum() / error.square().sum())
    assert snr > 40.0, snr
    # Channels are separate examples of 4 mono tracks; segments of 0.5 s at the model's 8 kHz.
    assert {shape[1:] for shape in model.calls} == {(4, 4000)}
    assert all(shape[0] % channels == 0 for shape in model.calls)


def test_debleed_needs_the_model_track_count() -> None:
    task = _task(_Unmix(torch.eye(4)))
    with pytest.raises(ValueError, match="4 tracks"):
        task.debleed(torch.zeros(3, 1000), RATE)


# -------------------------------------------------------------------------------------------- benchmark
@pytest.fixture(scope="module")
def bench(import_benchmark):
    return import_benchmark("bench_debleed")


def test_bench_test_set_is_fixed_real_audio(bench, shared_data) -> None:
    from musicfx.audio.io import read_audio

    clips, names = bench.nz_tour_clips(shared_data, 4.0, 2.0, None)
    rate = bench.RATE
    assert clips.shape == (8, 4, 1, 4 * rate) and names[1] == "nz-tour @2s"  # 18 s: clips at 0, 2, ..., 14 s
    guitar = read_audio(shared_data / bench.SISEC / "guitar.wav", sample_rate=rate, channels=1)[0]
    synth = read_audio(shared_data / bench.SISEC / "synth.wav", sample_rate=rate, channels=1)[0]
    torch.testing.assert_close(clips[1, 3], (guitar + synth)[:, 2 * rate:6 * rate])  # other = guitar + synth
    first, again = bench.bleed_scenes(clips[:3], "linear"), bench.bleed_scenes(clips[:3], "linear")
    for key in ("mics", "targets", "direct"):
        torch.testing.assert_close(first[key], again[key])  # the bleed of clip i is fixed by its index
    assert not torch.allclose(first["mics"], bench.bleed_scenes(clips[1:4], "linear")["mics"][:3])
    torch.testing.assert_close(first["targets"], clips[:3, :, 0])
    # direct = A_ii s_i: the microphone minus the bleed of the others.
    assert bool((first["direct"].abs() <= first["targets"].abs() + 1e-7).all())


def test_bench_sdr_is_per_track_median_over_windows_then_clips(bench) -> None:
    rate = bench.RATE
    references = torch.randn(3, 4, 2 * rate, generator=torch.Generator().manual_seed(0))
    gains = torch.tensor([0.1, 0.01, 1.0, 0.001])[None, :, None]  # error 20, 40, 0, 60 dB below the reference
    scores = bench.clip_sdr(references * (1 + gains), references)
    torch.testing.assert_close(scores.float(), torch.tensor([20.0, 40.0, 0.0, 60.0]).expand(3, 4), atol=1e-3, rtol=0)
    references[0, 0, :rate] = 0.0  # a silent window of one track is NaN for that track only
    scores = bench.clip_sdr(references * (1 + gains), references)
    assert math.isfinite(float(scores[0, 1])) and float(scores[0, 0]) == pytest.approx(20.0, abs=1e-3)
    summary = bench.summarize(torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0]]))
    # Columns in the seed's order (vocals, bass, drums, other); tracks in the recipes' (vocals, drums, bass, other).
    assert summary == {"vocals": 5.0, "bass": 7.0, "drums": 6.0, "other": 8.0, "overall": 6.5}


@pytest.mark.slow
def test_bench_quick_smoke(bench, shared_data, tmp_path, capsys) -> None:
    out = tmp_path / "debleed.json"
    code = bench.main(["--quick", "--shared", str(shared_data), "--listen-dir", str(tmp_path / "listen"),
                       "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Machine: ")
    report = json.loads(out.read_text())
    assert set(report["synthesis"]["cpu"]) == {"linear", "convolutive", "room", "mixed"}
    assert all(row["examples_per_s"] > 0 for row in report["synthesis"]["cpu"].values())
    assert all(row["s_per_minute"] > 0 for row in report["kamir_speed"])
    assert set(report["training"]) == {"t-UNet", "f-UNet", "df-UNet", "DI-CAE"}
    linear = report["quality"]["linear"]["summary"]
    # KAMIR removes linear bleed on these clips (scored against the direct path it can recover).
    assert linear["KAMIR, vs A_ii s_i"]["overall"] > linear["unprocessed, vs A_ii s_i"]["overall"] + 3.0
    rows = report["dagstuhl"]
    assert {row["set"] for row in rows} == {"all 15 microphones", "4 dynamic (DYN)", "4 larynx (LRX)"}
    assert all(0 <= row["before"] <= 1 and 0 <= row["after"] <= 1 for row in rows)
    assert len(list((tmp_path / "listen" / "dagstuhl").rglob("*.wav"))) == 15 * 2 + 4 * 3 * 2
