"""FxNorm effect normalization: onset detector, features, save/load, stem and dataset normalization, CLI."""
from __future__ import annotations

import dataclasses
import math
import os
import time

import numpy as np
import pytest
import torch

from musicfx.audio.io import read_audio, write_audio
from musicfx.audio.loudness import integrated_loudness
from musicfx.errors import DataError, MusicfxError
from musicfx.fxnorm.dataset import compute_features
from musicfx.fxnorm.features import (
    FEATURES_VERSION,
    FxNormConfig,
    FxNormFeatures,
    feature_distances,
    measure_stem,
    onset_dynamics,
    stereo_panning_spectrum,
)
from musicfx.fxnorm.normalize import (
    NormalizeOptions,
    design_fir,
    match_dynamics,
    match_eq,
    normalize_dataset,
    normalize_stem,
)
from musicfx.fxnorm.onsets import detect_onsets, onset_peak_levels, peak_statistics

SR = 44100


pytestmark = pytest.mark.usefixtures("one_thread")


NZ_STEMS = {"vocals": "vocals", "drums": "drums", "bass": "bass", "other": "guitar"}


def _clicks(positions, amplitudes, length, noise=1e-4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = noise * torch.randn(length, generator=generator)
    for position, amplitude in zip(positions, amplitudes):
        x[position] += amplitude
    return x


# ----------------------------------------------------------------------------------------------- onsets


def test_onsets_find_clicks_at_known_positions():
    positions = [4410, 20000, 33333, 51000, 70001, 85000]
    amplitudes = [0.9, 0.5, 0.25, 0.7, 0.1, 0.4]
    x = _clicks(positions, amplitudes, 2 * SR)
    onsets = detect_onsets(x, SR)
    assert onsets.numel() == len(positions)
    error_ms = (onsets - torch.tensor(positions)).abs().max().item() * 1000.0 / SR
    assert error_ms <= 10.0
    # Stereo input (channels averaged) finds the same onsets; the peak levels are the click amplitudes.
    stereo = torch.stack([x, 0.5 * x])
    assert torch.equal(detect_onsets(stereo, SR), onsets)
    levels = onset_peak_levels(stereo, SR, onsets)
    expected = 20.0 * np.log10(amplitudes)
    np.testing.assert_allclose(levels.numpy(), expected, atol=0.05)


def test_onsets_of_silence_and_steady_tone():
    assert detect_onsets(torch.zeros(SR), SR).numel() == 0
    t = torch.arange(2 * SR) / SR
    tone = 0.5 * torch.sin(2 * math.pi * 440.0 * t)
    assert detect_onsets(tone, SR).numel() <= 1  # at most the start of the tone


def test_peak_statistics_keep_the_loud_quarter():
    levels = torch.tensor([-30.0, -20.0, -12.0, -11.0, -10.0, -25.0, -26.0, -27.0])
    mean, std = peak_statistics(levels, 75.0)
    assert mean == pytest.approx(-10.5)  # the two peaks above the 75th percentile (-13.6 dB)
    assert std == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------- features


def test_features_of_sine_and_noise_differ_sensibly():
    config = FxNormConfig(n_fft=8192)
    t = torch.arange(3 * SR) / SR
    sine = 0.5 * torch.sin(2 * math.pi * 997.0 * t).expand(2, -1).clone()
    noise = 0.1 * torch.randn(2, 3 * SR, generator=torch.Generator().manual_seed(1))
    f_sine, f_noise = measure_stem(sine, SR, config), measure_stem(noise, SR, config)
    freqs = np.linspace(0, SR / 2, config.n_fft // 2 + 1)
    at_1k, at_5k = np.argmin(abs(freqs - 997.0)), np.argmin(abs(freqs - 5000.0))
    # A sine is one line; noise is flat.
    assert f_sine["eq"][at_1k] / f_sine["eq"][at_5k] > 1e4
    assert 0.5 < f_noise["eq"][at_1k] / f_noise["eq"][at_5k] < 2.0
    # Identical channels are centred; independent noise channels have similarity pi / 4 on average.
    assert f_sine["panning"].min() > 0.99
    assert abs(f_noise["panning"][10:-10].mean() - math.pi / 4) < 0.03
    # BS.1770: a 997 Hz sine at -6.02 dBFS in both channels reads -6.02 LUFS.
    assert f_sine["loudness"][0] == pytest.approx(-6.02, abs=0.05)
    assert f_noise["loudness"][0] < f_sine["loudness"][0]
    # A steady tone has no onsets to measure dynamics on; noise bursts do.
    assert "dynamics" not in f_sine
    bursts = noise * (torch.arange(3 * SR) % (SR // 2) < 2000)
    mean, std = onset_dynamics(bursts, SR)
    assert -11.0 < mean <= -10.0 and std < 1.0


def test_stereo_panning_spectrum_signs_and_values():
    x = torch.randn(SR, generator=torch.Generator().manual_seed(2))
    left = torch.stack([x, 0.3 * x])
    right = torch.stack([0.3 * x, x])
    similarity, sps, _ = stereo_panning_spectrum(left)
    expected = 2 * 0.3 / (1 + 0.09)
    inner = slice(5, -5)
    assert similarity[:, inner].mean().item() == pytest.approx(expected, abs=1e-3)
    assert sps[:, inner].mean().item() == pytest.approx(-(1 - expected), abs=1e-3)
    assert stereo_panning_spectrum(right)[1][:, inner].mean().item() == pytest.approx(1 - expected, abs=1e-3)
    with pytest.raises(ValueError):
        stereo_panning_spectrum(x[None])


def test_features_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    config = FxNormConfig(n_fft=1024, pan_n_fft=256)
    features = FxNormFeatures(
        eq={"vocals": rng.random(513), "bass": rng.random(513)},
        dynamics={"vocals": np.array([-11.0, 1.5]), "bass": np.array([-12.5, 0.5])},
        panning={"vocals": rng.random(129), "bass": rng.random(129)},
        loudness={"vocals": -20.5, "bass": -23.25},
        counts={"vocals": 3, "bass": 2},
        config=config,
    )
    path = features.save(tmp_path / "features.npz")
    loaded = FxNormFeatures.load(path)
    assert loaded.config == config and loaded.version == FEATURES_VERSION
    assert set(loaded.stems) == {"vocals", "bass"}
    for name in ("eq", "dynamics", "panning"):
        for stem in ("vocals", "bass"):
            np.testing.assert_allclose(getattr(loaded, name)[stem], getattr(features, name)[stem], rtol=1e-6)
    assert loaded.loudness == features.loudness and loaded.counts == features.counts
    assert loaded.digest() == FxNormFeatures.load(path).digest()
    changed = dataclasses.replace(loaded, loudness={"vocals": -20.0, "bass": -23.25})
    assert changed.digest() != loaded.digest()
    assert not list(tmp_path.glob("*.part"))  # atomic write left no temporary file

    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="junk.npz"):
        FxNormFeatures.load(tmp_path / "junk.npz")
    with pytest.raises(DataError, match="no such features file"):
        FxNormFeatures.load(tmp_path / "missing.npz")
    arrays = dict(np.load(path))
    arrays["version"] = np.array([FEATURES_VERSION + 1])
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(DataError, match="version"):
        FxNormFeatures.load(tmp_path / "future.npz")
    with pytest.raises(DataError, match="no eq target for stem 'drums'"):
        loaded.require("drums", "eq")


def test_builtin_features_are_complete():
    features = FxNormFeatures.builtin()
    config = features.config
    assert set(features.stems) == {"vocals", "drums", "bass", "other"}
    for stem in features.stems:
        assert features.eq[stem].shape == (config.n_fft // 2 + 1,)
        assert features.panning[stem].shape == (config.pan_n_fft // 2 + 1,)
        assert np.all((features.panning[stem] >= 0) & (features.panning[stem] <= 1))
        assert -60.0 < features.loudness[stem] < 0.0
        assert -40.0 < features.dynamics[stem][0] <= config.peak_db and features.dynamics[stem][1] >= 0.0
        assert features.counts[stem] >= 16


# ---------------------------------------------------------------------------------------- normalization


def test_design_fir_follows_the_requested_magnitude():
    freqs = torch.linspace(0, SR / 2, 2049)
    gains = torch.where(freqs < 2000.0, torch.tensor(1.0), torch.tensor(0.1))  # -20 dB above 2 kHz
    taps = design_fir(gains, 1001)
    assert torch.allclose(taps, taps.flip(0))  # linear phase
    response = torch.fft.rfft(taps, n=8192).abs()
    grid = torch.linspace(0, SR / 2, response.shape[0])
    assert abs(20 * math.log10(response[grid < 1500].mean())) < 0.5
    assert abs(20 * math.log10(response[grid > 3000].mean()) + 20.0) < 1.0


def _nz_excerpt(shared_data, name, seconds=4.0, offset=2.0):
    audio, rate = read_audio(shared_data / "sisec2011-nz-tour" / f"{name}.wav")
    return audio[:, int(offset * rate): int((offset + seconds) * rate)]


def test_normalization_moves_features_toward_targets(shared_data):
    features = FxNormFeatures.builtin()
    options = NormalizeOptions(pan_gain=1.0)  # aim at the target itself, not 0.9 of it
    dynamics_before = dynamics_after = 0.0
    for stem, name in NZ_STEMS.items():
        audio = _nz_excerpt(shared_data, name)
        before = feature_distances(audio, stem, features, SR)
        out = normalize_stem(audio, stem, features, SR, options=options)
        assert out.shape == audio.shape and torch.isfinite(out).all()
        after = feature_distances(out, stem, features, SR)
        assert after["eq"] < 0.8 * before["eq"], stem
        assert after["panning"] < before["panning"], stem
        assert after["loudness"] < 0.1 < before["loudness"], stem
        dynamics_before += before["dynamics"]
        dynamics_after += after["dynamics"]
    # The dynamics target is a range (mean +- std) that stems are compressed into from below, after the
    # EQ stage has moved them: per stem the distance to the mean can grow, over the four it must shrink.
    assert dynamics_after < 0.8 * dynamics_before


def _measured_as_searched(audio, onsets):
    """Mean loud onset peak of ``audio`` peak-normalised to -10 dBFS, at given onsets (as the search measures)."""
    return peak_statistics(onset_peak_levels(audio * (10 ** (-0.5) / audio.abs().max()), SR, onsets))[0]


@pytest.mark.parametrize("stem, shift", [("drums", 1.0), ("bass", -2.0)])
def test_compression_stage_brings_onset_peaks_into_the_target_range(shared_data, stem, shift):
    features = FxNormFeatures.builtin()
    audio = match_eq(_nz_excerpt(shared_data, stem), features.eq[stem], stem, features, SR)
    onsets = detect_onsets(audio, SR)
    measured = _measured_as_searched(audio, onsets)
    # A target whose loud onset peaks sit closer to (drums) or further below (bass) the stem's maximum.
    target = np.array([measured + shift, 0.25])
    squeezed = dataclasses.replace(features, dynamics=dict(features.dynamics, **{stem: target}))
    out = match_dynamics(audio, target, stem, squeezed, SR)
    reached = _measured_as_searched(out, onsets)
    assert abs(reached - target[0]) < 0.5 * abs(shift)
    # The gentlest sufficient setting: it lands near the range's near edge, not far past it.
    near = target[0] - 0.25 if shift > 0 else target[0] + 0.25
    assert abs(reached - near) < 0.6
    after, _ = onset_dynamics(out, SR)  # onsets detected afresh on the compressed stem
    assert abs(after - target[0]) < abs(measured - target[0])


def test_compression_stage_leaves_a_stem_within_range_alone(shared_data):
    features = FxNormFeatures.builtin()
    drums = _nz_excerpt(shared_data, "drums")
    measured, _ = onset_dynamics(drums, SR)
    out = match_dynamics(drums, np.array([measured + 0.2, 1.0]), "drums", features, SR)
    assert torch.allclose(out, drums * (10 ** (-0.5) / drums.abs().max()))  # only peak-normalised


def test_reverb_stage_adds_a_send_to_vocals_only(tmp_path, shared_data):
    ir_folder = tmp_path / "irs"
    decay = torch.exp(-torch.arange(SR // 2) / (0.1 * SR))
    ir = torch.randn(2, SR // 2, generator=torch.Generator().manual_seed(3)) * decay
    write_audio(ir_folder / "room.wav", ir, SR)
    features = FxNormFeatures.builtin()
    vocals = _nz_excerpt(shared_data, "vocals", seconds=2.0)
    wet = normalize_stem(vocals, "vocals", features, SR, ir_folder=ir_folder, effects=("reverb",), seed=5)
    assert not torch.allclose(wet, vocals)
    assert wet.square().sum() > vocals.square().sum()
    again = normalize_stem(vocals, "vocals", features, SR, ir_folder=ir_folder, effects=("reverb",), seed=5)
    assert torch.equal(wet, again)  # reproducible per seed
    bass = _nz_excerpt(shared_data, "bass", seconds=2.0)
    assert torch.equal(normalize_stem(bass, "bass", features, SR, ir_folder=ir_folder, effects=("reverb",)), bass)


def test_silent_stem_comes_back_unchanged():
    features = FxNormFeatures.builtin()
    quiet = torch.full((2, SR), 1e-4)
    assert torch.equal(normalize_stem(quiet, "vocals", features, SR), quiet)
    with pytest.raises(ValueError, match="Hz"):
        normalize_stem(torch.randn(2, 22050), "vocals", features, 22050)


# --------------------------------------------------------------------------------------------- datasets


def _small_dataset(root, shared_data, seconds=1.5):
    for song, offset in (("song_a", 1.0), ("album/song_b", 6.0)):
        for stem in ("vocals", "bass"):
            write_audio(root / song / f"{stem}.wav", _nz_excerpt(shared_data, stem, seconds, offset), SR,
                        subtype="PCM_16")
        mixture = sum(_nz_excerpt(shared_data, name, seconds, offset) for name in NZ_STEMS.values())
        write_audio(root / song / "mixture.wav", mixture, SR, subtype="PCM_16")


def test_normalize_dataset_writes_layout_and_skips_cached_songs(tmp_path, shared_data):
    root, out = tmp_path / "data", tmp_path / "normalized"
    _small_dataset(root, shared_data)
    features = FxNormFeatures.builtin()
    summary = normalize_dataset(root, out, features, stems=("vocals", "bass"), workers=0, progress=False)
    assert sorted(summary.normalized) == ["album/song_b", "song_a"] and summary.cached == []
    for song in ("song_a", "album/song_b"):
        for stem in ("vocals", "bass"):
            audio, rate = read_audio(out / song / f"{stem}.wav")
            assert rate == SR and audio.shape[-1] == int(1.5 * SR)
            loudness = float(integrated_loudness(audio, SR))
            assert loudness == pytest.approx(features.loudness[stem], abs=0.1)
        assert (out / song / "mixture.wav").read_bytes() == (root / song / "mixture.wav").read_bytes()
        assert (out / song / ".fxnorm.json").is_file()
    stamps = {path: path.stat().st_mtime_ns for path in out.rglob("*.wav")}

    again = normalize_dataset(root, out, features, stems=("vocals", "bass"), workers=0, progress=False)
    assert again.normalized == [] and sorted(again.cached) == ["album/song_b", "song_a"]
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*.wav")} == stamps

    # A changed input redoes its song only.
    changed = root / "song_a" / "vocals.wav"
    write_audio(changed, 0.5 * read_audio(changed)[0], SR, subtype="PCM_16")
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    third = normalize_dataset(root, out, features, stems=("vocals", "bass"), workers=0, progress=False)
    assert third.normalized == ["song_a"] and third.cached == ["album/song_b"]


def test_normalize_dataset_refuses_unsafe_outputs(tmp_path, shared_data):
    root = tmp_path / "data"
    _small_dataset(root, shared_data, seconds=0.6)
    features = FxNormFeatures.builtin()
    with pytest.raises(DataError, match="inside"):
        normalize_dataset(root, root / "normalized", features, workers=0, progress=False)
    with pytest.raises(DataError, match="inside"):
        normalize_dataset(root, root, features, workers=0, progress=False)
    with pytest.raises(DataError, match="no such dataset folder"):
        normalize_dataset(tmp_path / "nothing", tmp_path / "out", features, workers=0, progress=False)
    foreign = tmp_path / "out" / "song_a" / "vocals.wav"
    foreign.parent.mkdir(parents=True)
    foreign.write_bytes(b"precious")
    with pytest.raises(MusicfxError, match="overwrite"):
        normalize_dataset(root, tmp_path / "out", features, stems=("vocals",), workers=0, progress=False)
    assert foreign.read_bytes() == b"precious"
    normalize_dataset(root, tmp_path / "out", features, stems=("vocals",), workers=0, progress=False, overwrite=True)
    assert read_audio(foreign)[0].shape[0] == 2


@pytest.mark.filterwarnings("ignore:.*silent")
def test_compute_features_over_a_folder(tmp_path, shared_data):
    root = tmp_path / "data"
    _small_dataset(root, shared_data)
    write_audio(root / "song_c" / "vocals.wav", torch.zeros(2, SR), SR)  # silent: skipped with a warning
    config = FxNormConfig(n_fft=4096)
    with pytest.warns(UserWarning, match="silent"):
        features = compute_features(root, stems=("vocals", "bass"), workers=0, progress=False, config=config)
    assert features.counts == {"vocals": 2, "bass": 2}
    assert features.eq["vocals"].shape == (2049,)
    single = compute_features(root, stems=("vocals", "bass"), workers=0, progress=False, config=config,
                              sequential=False)
    # The loudness target of the sequential passes is that of peak-normalised, compressed stems; the
    # single pass measures the stems as they are (their mean LUFS).
    songs = [read_audio(root / song / "vocals.wav")[0] for song in ("song_a", "album/song_b")]
    assert single.loudness["vocals"] == pytest.approx(np.mean([float(integrated_loudness(s, SR)) for s in songs]),
                                                      abs=1e-3)
    assert features.loudness["vocals"] != pytest.approx(single.loudness["vocals"], abs=0.1)
    with pytest.raises(DataError, match="'drums'"):
        compute_features(root, stems=("vocals", "drums"), workers=0, progress=False, config=config,
                         sequential=False)


# -------------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def cli(monkeypatch):
    import musicfx.cli

    monkeypatch.setattr(musicfx.cli, "COMMAND_MODULES", ("musicfx.commands.fxnorm",))
    return musicfx.cli.main


def test_cli_errors_are_one_line(cli, tmp_path, shared_data, capsys):
    root = tmp_path / "data"
    _small_dataset(root, shared_data, seconds=0.6)
    (tmp_path / "features.npz").write_bytes(b"")
    cases = [
        (["fxnorm", "features", str(tmp_path / "missing"), "-o", str(tmp_path / "f.npz")], "no such dataset folder"),
        (["fxnorm", "features", str(root), "-o", str(tmp_path / "features.npz")], "exists; pass --overwrite"),
        (["fxnorm", "normalize", str(root), "-o", str(tmp_path / "out"), "--features", str(tmp_path / "nope.npz")],
         "no such features file"),
        (["fxnorm", "normalize", str(root), "-o", str(root / "out"), "--features", "builtin"], "inside"),
        (["fxnorm", "normalize", str(root), "-o", str(tmp_path / "out"), "--features", "builtin",
          "--ir-folder", str(tmp_path / "no-irs")], "impulse-response folder"),
    ]
    for argv, message in cases:
        assert cli(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def test_cli_features_then_normalize(cli, tmp_path, shared_data, capsys):
    root = tmp_path / "data"
    _small_dataset(root, shared_data, seconds=1.0)
    features_file = tmp_path / "features.npz"
    assert cli(["fxnorm", "features", str(root), "-o", str(features_file), "--stems", "vocals", "bass",
                "--workers", "2", "--single-pass", "-q"]) == 0
    features = FxNormFeatures.load(features_file)
    assert set(features.stems) == {"vocals", "bass"}
    out = tmp_path / "out"
    assert cli(["fxnorm", "normalize", str(root), "-o", str(out), "--features", str(features_file),
                "--workers", "0"]) == 0
    assert "2 songs normalised" in capsys.readouterr().out
    assert (out / "album" / "song_b" / "bass.wav").is_file()
