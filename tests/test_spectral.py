"""STFT helpers (musicfx.audio.spectral) and spectrogram figures (musicfx.audio.plot)."""
from __future__ import annotations

import math
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from musicfx.audio import spectral
from musicfx.audio.spectral import (
    ISTFT,
    STFT,
    amplitude_to_db,
    db_to_amplitude,
    db_to_power,
    fft_frequencies,
    frame_times,
    hann_window,
    istft,
    magnitude,
    power_to_db,
    spectrogram,
    stft,
)


def _noise(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=dtype)


@pytest.mark.parametrize("n_fft, hop", [(1024, 256), (2048, 512), (512, 128)])
@pytest.mark.parametrize("length", [22050, 22051, 1000])
def test_istft_inverts_stft(n_fft: int, hop: int, length: int) -> None:
    x = _noise(2, 3, length)
    X = stft(x, n_fft, hop)
    assert X.shape == (2, 3, n_fft // 2 + 1, 1 + length // hop)
    assert X.dtype == torch.complex64
    y = istft(X, n_fft, hop, length=length)
    assert y.shape == x.shape
    assert (y - x).abs().max() < 1e-5


def test_float64_round_trip_is_exact() -> None:
    x = _noise(4, 8000, dtype=torch.float64)
    X = stft(x, 1024, 256)
    assert X.dtype == torch.complex128
    assert (istft(X, 1024, 256, length=8000) - x).abs().max() < 1e-12


def test_stft_matches_a_framewise_numpy_reference() -> None:
    n_fft, hop, length = 256, 64, 1000
    x = _noise(length, seed=3).numpy().astype(np.float64)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    padded = np.pad(x, n_fft // 2, mode="reflect")
    frames = 1 + length // hop
    expected = np.stack([np.fft.rfft(window * padded[t * hop : t * hop + n_fft]) for t in range(frames)], axis=-1)
    got = stft(torch.from_numpy(x), n_fft, hop).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-9)


def test_sine_peaks_at_its_bin_with_the_expected_magnitude() -> None:
    sample_rate, n_fft, hop = 16000, 1024, 256
    bin_index = 64  # 1000 Hz falls exactly on bin 64
    t = torch.arange(sample_rate) / sample_rate
    x = 0.5 * torch.sin(2 * math.pi * 1000.0 * t)
    mag = magnitude(stft(x, n_fft, hop))
    middle = mag[:, 10:-10]
    assert torch.all(middle.argmax(0) == bin_index)
    # A sine of amplitude A under a window w shows A * sum(w) / 2 in its bin.
    expected = 0.5 * hann_window(n_fft).sum() / 2
    level = middle[bin_index]
    torch.testing.assert_close(level, torch.full_like(level, float(expected)), rtol=1e-4, atol=0.0)
    assert float(fft_frequencies(n_fft, sample_rate)[bin_index]) == pytest.approx(1000.0)


def test_custom_window_and_no_centering() -> None:
    x = _noise(2, 4096)
    window = torch.hann_window(400, periodic=True)
    X = stft(x, 512, 100, window=window, center=False)
    assert X.shape == (2, 257, 1 + (4096 - 512) // 100)
    # Frame 0 uncentred covers x[:512] with the 400-sample window centred inside it.
    padded_window = torch.nn.functional.pad(window, (56, 56))
    torch.testing.assert_close(X[0, :, 0], torch.fft.rfft(x[0, :512] * padded_window), atol=1e-4, rtol=1e-5)


def test_short_signal_falls_back_to_zero_padding() -> None:
    x = _noise(1, 300)
    X = stft(x, 1024, 256)
    assert X.shape == (1, 513, 2)
    torch.testing.assert_close(istft(X, 1024, 256, length=300), x, atol=1e-5, rtol=0)


def test_window_is_cached_per_length_device_and_dtype() -> None:
    assert hann_window(1024) is hann_window(1024)
    assert hann_window(1024) is not hann_window(1024, dtype=torch.float64)
    assert hann_window(1024) is not hann_window(2048)
    # stft's default window is the cached one, not a fresh allocation per call.
    stft(_noise(100), 64, 16)
    assert any(key[0] == 64 and key[2] == torch.float32 for key in spectral._WINDOWS)


def test_half_precision_and_autocast_compute_in_float32() -> None:
    x = _noise(2, 4000)
    reference = stft(x, 512, 128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        X = stft(x.to(torch.bfloat16), 512, 128)
        y = istft(X, 512, 128, length=4000)
    assert X.dtype == torch.complex64 and y.dtype == torch.float32
    torch.testing.assert_close(X, stft(x.to(torch.bfloat16).float(), 512, 128))
    assert (X - reference).abs().max() < 0.05 * reference.abs().max()  # only bf16 input rounding


def test_magnitude_power_and_gradient_at_zero() -> None:
    X = torch.complex(_noise(5, 7), _noise(5, 7, seed=1))
    torch.testing.assert_close(magnitude(X), X.abs(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(magnitude(X, power=2.0), X.abs() ** 2)
    torch.testing.assert_close(magnitude(X, power=0.5), X.abs() ** 0.5, rtol=1e-6, atol=1e-6)

    signal = torch.zeros(2000, requires_grad=True)
    magnitude(stft(signal, 256, 64)).sum().backward()
    assert torch.isfinite(signal.grad).all()


def test_spectrogram_is_power_of_stft_magnitude() -> None:
    x = _noise(2, 3000)
    torch.testing.assert_close(spectrogram(x, 256, 64, power=2.0), stft(x, 256, 64).abs() ** 2, rtol=1e-5, atol=1e-5)


def test_decibel_helpers() -> None:
    values = torch.tensor([1.0, 0.1, 0.01, 2.0])
    torch.testing.assert_close(amplitude_to_db(values), torch.tensor([0.0, -20.0, -40.0, 20 * math.log10(2.0)]))
    torch.testing.assert_close(power_to_db(values), torch.tensor([0.0, -10.0, -20.0, 10 * math.log10(2.0)]))
    torch.testing.assert_close(db_to_amplitude(amplitude_to_db(values)), values)
    torch.testing.assert_close(db_to_power(power_to_db(values)), values)
    assert float(amplitude_to_db(torch.tensor(0.0))) == pytest.approx(-160.0)
    assert float(power_to_db(torch.tensor(0.0))) == pytest.approx(-160.0)


def test_frame_times_follow_the_hop() -> None:
    torch.testing.assert_close(frame_times(4, 441, 44100), torch.tensor([0.0, 0.01, 0.02, 0.03]))


def test_modules_round_trip_and_keep_window_out_of_checkpoints() -> None:
    forward, inverse = STFT(1024), ISTFT(1024)
    assert forward.hop_length == 256
    x = _noise(3, 2, 10000)
    X = forward(x)
    assert X.shape[-1] == forward.num_frames(10000)
    torch.testing.assert_close(inverse(X, 10000), x, atol=1e-5, rtol=0)
    assert "window" not in forward.state_dict()


def test_modules_normalized_and_zero_padded_match_torch() -> None:
    forward = STFT(256, 64, normalized=True, pad_mode="constant")
    inverse = ISTFT(256, 64, normalized=True)
    x = _noise(2, 1, 100)  # shorter than n_fft // 2: only zero padding is possible
    X = forward(x)
    expected = torch.stft(x.reshape(-1, 100), 256, 64, window=torch.hann_window(256), center=True, pad_mode="constant",
                          normalized=True, return_complex=True).reshape(X.shape)
    assert torch.equal(X, expected)
    torch.testing.assert_close(inverse(X, 100), x, atol=1e-5, rtol=0)
    assert "normalized=True" in repr(inverse) and "pad_mode='constant'" in repr(forward)
    with pytest.raises(ValueError, match="hop_length"):
        STFT(256, 512)


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="real signal"):
        stft(torch.zeros(100, dtype=torch.complex64), 64, 16)
    with pytest.raises(ValueError, match="bins"):
        istft(torch.zeros(10, 5, dtype=torch.complex64), 64, 16, length=100)
    with pytest.raises(ValueError, match="window"):
        stft(torch.zeros(100), 64, 16, window=torch.ones(128))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_round_trip_on_gpu_under_autocast() -> None:
    x = _noise(2, 2, 16000).cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        X = stft(x.half(), 1024, 256)
        y = istft(X, 1024, 256, length=16000)
    assert X.dtype == torch.complex64 and X.device.type == "cuda"
    assert (y - x.half().float()).abs().max() < 1e-5


# --- spectrogram figures ------------------------------------------------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple:
    header = path.read_bytes()[:24]
    assert header[:8] == PNG_MAGIC
    return struct.unpack(">II", header[16:24])


@pytest.fixture()
def scene() -> dict:
    sample_rate = 16000
    t = torch.arange(2 * sample_rate) / sample_rate
    clean = 0.3 * torch.sin(2 * math.pi * 440.0 * t)
    noise = 0.05 * _noise(2 * sample_rate, seed=7)
    return {"noisy": (clean + noise).expand(2, -1), "estimate": clean + 0.1 * noise, "clean": clean.unsqueeze(0)}


def test_spectrogram_figure_has_a_row_per_signal_and_a_shared_scale(scene: dict) -> None:
    from musicfx.audio.plot import spectrogram_figure

    figure = spectrogram_figure(scene, 16000, title="denoise")
    axes = [axis for axis in figure.axes if axis.get_label() != "<colorbar>"]
    assert len(axes) == 3 and len(figure.axes) == 4  # three rows and one colour bar
    limits = {axis.collections[0].get_clim() for axis in axes}
    assert len(limits) == 1  # one colour scale for all rows
    vmin, vmax = limits.pop()
    assert vmax - vmin == pytest.approx(90.0)
    assert all(axis.get_yscale() == "log" for axis in axes)
    assert axes[-1].get_xlim()[1] == pytest.approx(2.0, abs=0.05)  # seconds
    # The 440 Hz tone is the loudest band of the clean row.
    clean = axes[2].collections[0]
    edges = clean.get_coordinates()[:, 0, 1]
    levels = np.asarray(clean.get_array()).reshape(len(edges) - 1, -1)
    loudest = levels.mean(1).argmax()
    assert edges[loudest] <= 440.0 <= edges[loudest + 1]
    assert figure.get_suptitle() == "denoise"


def test_save_spectrogram_png_writes_a_valid_image(tmp_path: Path, scene: dict) -> None:
    import matplotlib.image

    from musicfx.audio.plot import save_spectrogram_png

    path = save_spectrogram_png(tmp_path / "figures" / "example.png", scene, 16000, title="example")
    assert path == tmp_path / "figures" / "example.png"
    width, height = _png_size(path)
    assert width >= 800 and height >= 500
    image = matplotlib.image.imread(str(path))
    assert image.shape[:2] == (height, width)
    assert image[..., :3].std() > 0.1  # a picture, not a blank canvas
    assert [p.name for p in path.parent.iterdir()] == ["example.png"]  # no temporary file left


def test_figure_rejects_bad_input() -> None:
    from musicfx.audio.plot import spectrogram_figure

    with pytest.raises(ValueError, match="at least one"):
        spectrogram_figure({}, 16000)
    with pytest.raises(ValueError, match="'batch'"):
        spectrogram_figure({"batch": torch.zeros(2, 2, 100)}, 16000)


def test_importing_the_audio_package_does_not_import_matplotlib() -> None:
    import subprocess

    code = "import sys, musicfx.audio; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_fft_convolve_matches_numpy_full_and_same():
    import numpy as np

    from musicfx.audio.spectral import fft_convolve

    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 2, 1000, generator=g, dtype=torch.float64)
    kernel = torch.randn(2, 37, generator=g, dtype=torch.float64)
    expected = np.stack([[np.convolve(x[b, c].numpy(), kernel[c].numpy()) for c in range(2)] for b in range(3)])
    assert np.abs(fft_convolve(x, kernel).numpy() - expected).max() < 1e-10
    assert np.abs(fft_convolve(x, kernel, mode="same").numpy() - expected[..., :1000]).max() < 1e-10
    with pytest.raises(ValueError):
        fft_convolve(x, kernel, mode="valid")


def test_fft_convolve_of_a_long_signal_goes_by_blocks_and_matches_one_fft(monkeypatch):
    """A signal >= 8 blocks long is convolved by overlap-add of blocks: same result, broadcasting and
    gradients as one FFT over the whole signal."""
    import musicfx.audio.spectral as spectral

    monkeypatch.setattr(spectral, "CONVOLVE_BLOCK_FFT", 256)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 2, 5000, generator=g, dtype=torch.float64, requires_grad=True)
    kernel = torch.randn(2, 37, generator=g, dtype=torch.float64, requires_grad=True)
    calls = []
    block = spectral._block_convolve
    monkeypatch.setattr(spectral, "_block_convolve", lambda *a: calls.append(1) or block(*a))
    blocked = spectral.fft_convolve(x, kernel)
    assert calls
    monkeypatch.setattr(spectral, "CONVOLVE_BLOCK_FFT", 1 << 20)
    whole = spectral.fft_convolve(x, kernel)
    assert len(calls) == 1 and blocked.shape == whole.shape == (3, 2, 5036)
    assert (blocked - whole).abs().max() < 1e-10
    grads = torch.autograd.grad(blocked.square().sum(), (x, kernel))
    expected = torch.autograd.grad(whole.square().sum(), (x, kernel))
    assert all((a - b).abs().max() < 1e-8 for a, b in zip(grads, expected))
