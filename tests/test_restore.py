"""`musicfx restore`: the NZ Tour stems with simulated bleed (linear and convolutive) and noise; each stage
improves its own measure and the chain beats each single stage; checkpoints plug in; bad input is one error
line and writes nothing; memory does not grow with the session's length."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import soundfile as sf
import torch

import musicfx
import musicfx.api
import musicfx.cli
from musicfx.errors import MusicfxError
from musicfx.metrics.sdr import si_sdr
from musicfx.restore import read_session, restore, track_class
from musicfx.synth.bleed import BleedSynth

NAMES = ("vocals", "drums", "bass", "guitar")
SR = 44100
SECONDS = 3.0


@pytest.fixture(autouse=True)
def _one_thread():
    # Short tensors through many small engine calls: a second thread only adds contention on a busy machine.
    torch.set_num_threads(1)
    yield


def _session(shared_data: Path, folder: Path, kind: str) -> torch.Tensor:
    """NZ Tour stems (mono, 3 s from 4 s in) through a ``kind`` bleed scene plus white noise (-50 dBFS RMS, a
    quiet room), written as ``folder/<stem>.wav``; returns the targets ``(tracks, 1, time)``: each microphone's own source
    at its own direct gain (KAMIR cannot see absolute gains)."""
    clean = torch.stack([
        torch.tensor(sf.read(shared_data / "sisec2011-nz-tour" / f"{name}.wav", dtype="float32", start=4 * SR,
                             frames=int(SECONDS * SR))[0].mean(1))[None] for name in NAMES
    ])
    synth = BleedSynth(num_tracks=len(NAMES), sample_rate=SR, kind=kind, target="direct")
    params = synth.draw(torch.Generator().manual_seed(1))
    mics, targets = synth(clean[None], {key: value[None] for key, value in params.items()})
    noisy = mics[0] + 0.003 * torch.randn(mics[0].shape, generator=torch.Generator().manual_seed(2))
    folder.mkdir(parents=True)
    for name, audio in zip(NAMES, noisy):
        sf.write(folder / f"{name}.wav", audio[0].numpy(), SR, subtype="FLOAT")
    return targets[0]


def _si_sdr(folder: Path, targets: torch.Tensor) -> float:
    estimates = torch.stack([torch.tensor(sf.read(folder / f"{name}.wav", dtype="float32")[0])[None]
                             for name in NAMES])
    return float(si_sdr(estimates, targets).mean())


@pytest.fixture(scope="module", params=["linear", "convolutive"])
def runs(request, shared_data, tmp_path_factory) -> Dict[str, object]:
    """One session per bleed kind, restored four ways (normalize and mix left out: they do not touch the
    cleaned tracks, and cost seconds)."""
    root = tmp_path_factory.mktemp(f"restore-{request.param}")
    targets = _session(shared_data, root / "session", request.param)
    reports = {}
    for debleed, denoise in (("kamir", "none"), ("none", "spectral-gate"), ("kamir", "spectral-gate")):
        out = root / f"{debleed}-{denoise}"
        reports[(debleed, denoise)] = restore(root / "session", out, debleed=debleed, denoise=denoise,
                                              normalize="none", progress=False, plot=False)
    return {"root": root, "targets": targets, "reports": reports}


def test_each_stage_improves_its_measure_and_the_chain_beats_each(runs) -> None:
    root, targets, reports = runs["root"], runs["targets"], runs["reports"]
    before = _si_sdr(root / "session", targets)
    debleed = _si_sdr(root / "kamir-none" / "tracks", targets)
    denoise = _si_sdr(root / "none-spectral-gate" / "tracks", targets)
    chain = _si_sdr(root / "kamir-spectral-gate" / "tracks", targets)
    # Debleeding lowers the leakage and raises SI-SDR against each microphone's own source.
    leak = reports[("kamir", "none")]["leakage"]
    assert leak["after"] < 0.5 * leak["before"]
    assert debleed > before + 0.5
    # Denoising lowers every track's noise floor.
    for track in reports[("none", "spectral-gate")]["tracks"].values():
        floor = track["noise_floor_dbfs"]
        assert floor["after"] < floor["before"] - 3.0, floor
    assert denoise > before + 0.5
    # The chain beats either stage alone.
    print(f"SI-SDR dB: input {before:.2f}, debleed {debleed:.2f}, denoise {denoise:.2f}, chain {chain:.2f}")
    assert chain > max(debleed, denoise) + 0.5, (before, debleed, denoise, chain)


def test_full_run_writes_everything(shared_data, tmp_path) -> None:
    _session(shared_data, tmp_path / "session", "linear")
    out = tmp_path / "out"
    code = musicfx.cli.main(["restore", str(tmp_path / "session"), "-o", str(out), "--mix", "console", "-q"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["mix.wav", "normalized", "report.json", "report.png", "tracks"]
    for folder in ("tracks", "normalized"):
        assert sorted(p.name for p in (out / folder).iterdir()) == sorted(f"{n}.wav" for n in NAMES)
    mix, rate = sf.read(out / "mix.wav")
    assert rate == SR and mix.shape == (int(SECONDS * SR), 2) and np.abs(mix).max() <= 10 ** (-0.3 / 20) + 1e-6
    assert set(report["seconds"]) >= {"debleed", "denoise", "normalize", "mix"}
    # FxNorm brings each class near its target loudness, whatever the track's own level.
    features = musicfx.automix.load_features("builtin")
    for name, track in report["tracks"].items():
        target = float(features.require(track_class(name), "loudness")[0])
        assert abs(track["loudness_lufs"]["normalized"] - target) < 2.0, (name, track)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_track_classes() -> None:
    assert [track_class(n) for n in ("Lead Vocal", "02_vox", "kick_in", "OH_L", "snare-top", "Bass DI", "Gtr 1",
                                     "keys", "singer2", "hihat", "Bassoon")] == [
        "vocals", "vocals", "drums", "drums", "drums", "bass", "other", "other", "vocals", "drums", "other"]


def test_checkpoints_plug_in(tmp_path, monkeypatch) -> None:
    """Stand-in tasks: a debleed model matched to the tracks by name, a denoiser, an automix model."""

    class Identity(torch.nn.Module):
        def forward(self, x):
            return x

    class Sum(torch.nn.Module):
        def forward(self, stems):
            return stems.sum(dim=1)

    class Debleed:
        sample_rate, channels, model, tracks = SR, 1, Identity(), ("drums", "vocals")

        def debleed(self, *_):
            return None

    class Denoise:
        sample_rate, channels, model = SR, 1, Identity()

        def denoise(self, *_):
            return None

    class Mix:
        sample_rate, channels, model, stems, mode = SR, 2, Sum(), ("vocals", "drums", "bass", "other"), "mix"

        def mix(self, *_):
            return None

    tasks = {"debleed.ckpt": Debleed, "denoise.ckpt": Denoise, "mix.ckpt": Mix}
    monkeypatch.setattr(musicfx.api, "load", lambda path, device="cpu", **_: tasks[Path(path).name]())
    for name in tasks:
        (tmp_path / name).write_bytes(b"stand-in")
    session = tmp_path / "session"
    session.mkdir()
    t = np.arange(SR) / SR
    sf.write(session / "vocals.wav", 0.3 * np.sin(2 * np.pi * 440 * t), SR, subtype="FLOAT")
    sf.write(session / "drums.wav", 0.2 * np.sin(2 * np.pi * 110 * t), SR, subtype="FLOAT")
    report = restore(session, tmp_path / "out", debleed=str(tmp_path / "debleed.ckpt"),
                     denoise=str(tmp_path / "denoise.ckpt"), normalize="none", mix=str(tmp_path / "mix.ckpt"),
                     progress=False, plot=False)
    for name in ("vocals", "drums"):  # identity models: the tracks come back unchanged, each to its own name
        np.testing.assert_allclose(sf.read(tmp_path / "out" / "tracks" / f"{name}.wav")[0],
                                   sf.read(session / f"{name}.wav")[0], atol=1e-5)
    mix = sf.read(tmp_path / "out" / "mix.wav")[0]
    np.testing.assert_allclose(mix[:, 0], 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 110 * t),
                               atol=1e-4)
    assert report["options"]["mix"].endswith("mix.ckpt")


# ------------------------------------------------------------------------------------ real checkpoints
REPO = Path(__file__).resolve().parents[1]


def _fit(folder: Path, recipe: str, *overrides: str) -> Path:
    """Train ``recipes/<recipe>`` for two CPU steps through ``musicfx fit`` (the real LightningModule and its
    checkpoint path), shrunk by CLI overrides only; returns its ``last.ckpt``."""
    import os

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        code = musicfx.cli.main([
            "fit", "-c", str(REPO / "recipes" / recipe), "-c", str(REPO / "recipes/trainer/cpu.yaml"),
            "--trainer.max_steps=2", "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
            "--trainer.enable_progress_bar=false", "--data.init_args.num_workers=0", "--data.init_args.batch_size=2",
            "--data.init_args.segment=0.5", *overrides,
        ])
    finally:
        os.chdir(cwd)
    assert code == 0
    (path,) = folder.rglob("last.ckpt")
    return path


@pytest.fixture(scope="module")
def debleed_checkpoint(tmp_path_factory) -> Path:
    """The t-UNet recipe (4 tracks: vocals, drums, bass, other at 22.05 kHz), two steps."""
    return _fit(tmp_path_factory.mktemp("fit-debleed"), "debleed/t_unet.yaml")


@pytest.fixture(scope="module")
def mix_checkpoint(tmp_path_factory) -> Path:
    """The Wave-U-Net automix recipe (stems vocals, drums, bass, other; stereo 44.1 kHz), two steps, 3 levels."""
    return _fit(tmp_path_factory.mktemp("fit-mix"), "automix/wave_u_net.yaml",
                "--model.init_args.model.init_args.levels=3", "--model.init_args.model.init_args.features=8")


def _tone_session(folder: Path, names: List[str], seconds: float = 1.5) -> Dict[str, np.ndarray]:
    """Mono 44.1 kHz tracks, each two tones and a little noise (no silence); returns ``{name: audio}``."""
    folder.mkdir(parents=True)
    t = np.arange(int(SR * seconds)) / SR
    rng = np.random.default_rng(0)
    tracks = {}
    for i, name in enumerate(names):
        audio = 0.2 * np.sin(2 * np.pi * (110 * (i + 1)) * t) + 0.1 * np.sin(2 * np.pi * 1500 * (i + 1) * t)
        tracks[name] = (audio + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        sf.write(folder / f"{name}.wav", tracks[name], SR, subtype="FLOAT")
    return tracks


def test_real_denoise_checkpoint(trained_checkpoint, tmp_path) -> None:
    """``--denoise CKPT`` with the quickstart's MusicECAN (DenoiseTask, 22.05 kHz): every cleaned track is what
    the task's own ``denoise`` makes of that track."""
    tracks = _tone_session(tmp_path / "session", ["vocals", "bass"])
    report = restore(tmp_path / "session", tmp_path / "out", debleed="none", denoise=str(trained_checkpoint),
                     normalize="none", progress=False, plot=False)
    task = musicfx.api.load(trained_checkpoint)
    for name, audio in tracks.items():
        expected = task.denoise(torch.from_numpy(audio)[None], SR)[0].numpy()
        cleaned = sf.read(tmp_path / "out" / "tracks" / f"{name}.wav", dtype="float32")[0]
        assert np.abs(cleaned - audio).max() > 1e-3  # the model changed the track
        np.testing.assert_allclose(cleaned, expected, atol=1e-4)
    assert report["options"]["denoise"] == str(trained_checkpoint)


def test_real_debleed_checkpoint(debleed_checkpoint, tmp_path) -> None:
    """``--debleed CKPT`` with the t-UNet recipe's DebleedTask: the files (not in the model's order on disk) are
    matched to its tracks by name, and the cleaned tracks are the task's own ``debleed`` of them."""
    task = musicfx.api.load(debleed_checkpoint)
    names = ["01_other", "02_bass", "03_vocals", "04_drums"]
    tracks = _tone_session(tmp_path / "session", names)
    restore(tmp_path / "session", tmp_path / "out", debleed=str(debleed_checkpoint), denoise="none",
            normalize="none", progress=False, plot=False)
    order = [next(n for n in names if n.endswith(track)) for track in task.tracks]
    expected = task.debleed(torch.stack([torch.from_numpy(tracks[n]) for n in order]), SR)
    for name, audio in zip(order, expected):
        cleaned = sf.read(tmp_path / "out" / "tracks" / f"{name}.wav", dtype="float32")[0]
        assert np.abs(cleaned - tracks[name]).max() > 1e-3
        np.testing.assert_allclose(cleaned, audio.numpy(), atol=1e-4)


def test_real_mix_checkpoint(mix_checkpoint, tmp_path) -> None:
    """``--mix CKPT`` with the Wave-U-Net recipe's AutomixTask: the tracks are summed per class into its stem
    slots (two drum microphones into ``drums``, a guitar into ``other``) and the mix is the task's own ``mix``
    of those stems, scaled by the reported peak gain."""
    task = musicfx.api.load(mix_checkpoint)
    tracks = _tone_session(tmp_path / "session", ["bass", "guitar", "kick", "snare", "vocals"])
    report = restore(tmp_path / "session", tmp_path / "out", debleed="none", denoise="none", normalize="none",
                     mix=str(mix_checkpoint), progress=False, plot=False)
    by_class = {"vocals": tracks["vocals"], "drums": tracks["kick"] + tracks["snare"], "bass": tracks["bass"],
                "other": tracks["guitar"]}
    stems = torch.stack([torch.from_numpy(by_class[stem])[None] for stem in task.stems])
    expected = task.mix(stems, SR).numpy().T * 10 ** (report["mix"]["gain_db"] / 20)
    mix = sf.read(tmp_path / "out" / "mix.wav", dtype="float32")[0]
    assert mix.shape == expected.shape and np.abs(mix).max() > 1e-3
    np.testing.assert_allclose(mix, expected, atol=1e-4)


# ------------------------------------------------------------------------------------------ bad input
def _write(folder: Path, names: List[str], rate: int = 8000, seconds: float = 1.0, silent: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    for i, name in enumerate(names):
        audio = np.zeros_like(t) if name == silent else 0.2 * np.sin(2 * np.pi * (200 + 50 * i) * t)
        sf.write(folder / f"{name}.wav", audio.astype(np.float32), rate, subtype="FLOAT")
    return folder


def _snapshot(folder: Path) -> Dict[Path, bytes]:
    return {p: p.read_bytes() if p.is_file() else b"<dir>" for p in folder.rglob("*")}


def _case(tmp_path: Path, case: str) -> Tuple[List[str], List[str]]:
    """The arguments of a bad run, and what its error line must say."""
    session = tmp_path / "session"
    if case == "rates":
        _write(session, ["vocals", "bass"])
        sf.write(session / "drums.wav", np.zeros(16000, np.float32) + 0.1, 16000)
        return [str(session), "-o", str(tmp_path / "out")], ["drums.wav", "16000 Hz", "8000 Hz"]
    if case == "lengths":
        _write(session, ["vocals", "bass"])
        _write(session, ["drums"], seconds=1.5)
        return [str(session), "-o", str(tmp_path / "out")], ["drums.wav", "length"]
    if case == "silent":
        _write(session, ["vocals", "bass", "drums"], silent="bass")
        return [str(session), "-o", str(tmp_path / "out")], ["bass.wav", "silent"]
    if case == "one-track":
        _write(session, ["vocals"])
        return [str(session), "-o", str(tmp_path / "out")], ["at least two tracks"]
    if case == "inside":
        _write(session, ["vocals", "bass"])
        return [str(session), "-o", str(session / "restored")], ["inside the session"]
    if case == "same":
        _write(session, ["vocals", "bass"])
        return [str(session), "-o", str(session)], ["inside the session"]
    if case == "holds":
        _write(tmp_path / "out" / "session", ["vocals", "bass"])
        return [str(tmp_path / "out" / "session"), "-o", str(tmp_path / "out"), "--overwrite"], ["holds the session"]
    if case == "exists":
        _write(session, ["vocals", "bass"])
        (tmp_path / "out").mkdir()
        return [str(session), "-o", str(tmp_path / "out")], ["exists", "--overwrite"]
    if case == "wrong-task":
        _write(session, ["vocals", "bass"])
        (tmp_path / "denoise.ckpt").write_bytes(b"stand-in")
        return ([str(session), "-o", str(tmp_path / "out"), "--debleed", str(tmp_path / "denoise.ckpt")],
                ["not a debleed checkpoint"])
    if case == "features":
        _write(session, ["vocals", "bass"])
        return ([str(session), "-o", str(tmp_path / "out"), "--normalize", str(tmp_path / "nope.npz")],
                ["no such features file"])
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["rates", "lengths", "silent", "one-track", "inside", "same", "holds", "exists",
                                  "wrong-task", "features"])
def test_bad_input_is_one_error_line_and_writes_nothing(case, tmp_path, monkeypatch, capsys) -> None:
    class Denoise:
        sample_rate, channels = SR, 1

        def denoise(self, *_):
            return None

    monkeypatch.setattr(musicfx.api, "load", lambda path, device="cpu", **_: Denoise())
    args, needles = _case(tmp_path, case)
    before = _snapshot(tmp_path)
    code = musicfx.cli.main(["restore", *args, "-q"])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("musicfx: error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert _snapshot(tmp_path) == before


def test_overwrite_replaces_the_old_output_only_when_done(tmp_path) -> None:
    session = _write(tmp_path / "session", ["vocals", "bass"])
    inputs = _snapshot(session)
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("an earlier run")
    restore(session, out, debleed="none", normalize="none", progress=False, plot=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["mix.wav", "normalized", "report.json", "tracks"]
    assert _snapshot(session) == inputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "session"]  # nothing hidden left behind


def test_read_session_rejects_more_than_stereo(tmp_path) -> None:
    _write(tmp_path / "s", ["vocals"])
    sf.write(tmp_path / "s" / "room.wav", np.zeros((8000, 3), np.float32) + 0.1, 8000)
    with pytest.raises(MusicfxError, match="room.wav: has 3 channels"):
        read_session(tmp_path / "s")


# ---------------------------------------------------------------------------------------------- memory
def test_memory_does_not_grow_with_the_sessions_length(tmp_path, monkeypatch) -> None:
    """Every stage runs through the engine; the samples it holds at once peak at the same count for a 12 s
    and a 48 s session with blocks and segments of 3 s (and the excerpt FxNorm decides on is bounded)."""
    import musicfx.fxnorm.stream as stream
    import musicfx.inference as inference

    held: List[int] = []
    push = inference.OverlapAdd.push

    def recording_push(self, block):
        out = push(self, block)
        held.append(self._buffer.numel() + block.numel() + out.numel())
        return out

    excerpts: List[int] = []
    excerpt = stream.excerpt

    def recording_excerpt(*args, **kwargs):
        audio, rate = excerpt(*args, **kwargs)
        excerpts.append(audio.shape[-1] / rate)
        return audio, rate

    monkeypatch.setattr(inference.OverlapAdd, "push", recording_push)
    monkeypatch.setattr(stream, "excerpt", recording_excerpt)
    # The stages' blocks and segments shrunk 10x, so a short session spans many of them and the test is fast.
    import musicfx.debleed
    import musicfx.restore

    monkeypatch.setattr(musicfx.restore, "BLOCK_SECONDS", 3.0)
    monkeypatch.setattr(musicfx.restore, "DENOISE_SEGMENT", 3.0)
    monkeypatch.setattr(musicfx.restore, "NORMALIZE_SEGMENT", 3.0)
    monkeypatch.setattr(musicfx.debleed, "KAMIR_SEGMENT", 3.0)
    monkeypatch.setattr(stream, "EXCERPT_SECONDS", 6.0)
    rate, peaks = 8000, {}
    for seconds in (12, 48):
        held.clear()
        session = tmp_path / f"s{seconds}"
        session.mkdir()
        t = np.arange(rate * seconds) / rate
        noise = np.random.default_rng(seconds).standard_normal((2, t.size)) * 0.01
        vocals = 0.3 * np.sin(2 * np.pi * 300 * t) * (t % 1 < 0.5) + noise[0]
        sf.write(session / "vocals.wav", vocals.astype(np.float32), rate, subtype="FLOAT")
        sf.write(session / "bass.wav", (0.3 * np.sin(2 * np.pi * 80 * t) + noise[1]).astype(np.float32), rate,
                 subtype="FLOAT")
        restore(session, tmp_path / f"o{seconds}", progress=False, plot=False)
        peaks[seconds] = max(held)
    assert peaks[48] <= 1.1 * peaks[12], peaks  # vs 4x the samples
    assert max(excerpts) <= stream.EXCERPT_SECONDS + 1


def test_no_tensor_grows_with_the_sessions_length(tmp_path, monkeypatch) -> None:
    """Beyond the engine: no torch operation anywhere in the chain (the measures, the leakage, the report
    picture, the mix's peak pass) makes a tensor that grows with the session. With blocks and segments of
    1.5 s, the largest tensor any operation returns is the same for an 8 s and a 32 s session; a whole 32 s
    track (256 000 samples at 8 kHz) would be twice the largest one now (the spectral gate's fixed table of
    2^16 draws, KAMIR's 1.5 s STFT). FxNorm is left out: its planning holds a bounded excerpt of
    65536-point frames (checked by the test above)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    import musicfx.debleed
    import musicfx.restore

    class Largest(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for item in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(item, torch.Tensor):
                    self.numel = max(self.numel, item.numel())
            return out

    for name in ("BLOCK_SECONDS", "DENOISE_SEGMENT", "MIX_SEGMENT", "PLOT_SECONDS"):
        monkeypatch.setattr(musicfx.restore, name, 1.5)
    monkeypatch.setattr(musicfx.debleed, "KAMIR_SEGMENT", 1.5)
    # The measures take their block length as a default argument.
    monkeypatch.setattr(musicfx.restore.measure_file, "__defaults__", (1.5,))
    monkeypatch.setattr(musicfx.debleed.file_leakage, "__defaults__", (1.5,))
    largest = {}
    for seconds in (8, 32):
        session = _write(tmp_path / f"s{seconds}", ["vocals", "bass"], rate=8000, seconds=seconds)
        mode = Largest()
        with mode:
            restore(session, tmp_path / f"o{seconds}", normalize="none", progress=False, plot=True)
        largest[seconds] = mode.numel
    assert largest[32] <= 1.05 * largest[8] and largest[32] < 8000 * 32, largest


def _reference_smooth_gain(gain: torch.Tensor, bins: int, frames: int) -> torch.Tensor:
    """The spectral gate's smoothing as it was: two one-channel conv2d passes."""
    g = gain.unsqueeze(1)
    for axis, half in ((0, bins), (1, frames)):
        if half < 1:
            continue
        tri = torch.cat([torch.arange(1, half + 2), torch.arange(half, 0, -1)]).to(gain)
        tri = tri / tri.sum()
        shape = (1, 1, 2 * half + 1, 1) if axis == 0 else (1, 1, 1, 2 * half + 1)
        padding = (0, 0, half, half) if axis == 0 else (half, half, 0, 0)
        g = torch.nn.functional.conv2d(torch.nn.functional.pad(g, padding, mode="replicate"), tri.view(shape))
    return g.squeeze(1)


def _reference_percentile(values: torch.Tensor, valid: torch.Tensor, q: float) -> torch.Tensor:
    """The spectral gate's masked percentile as it was: a full sort."""
    ordered = values.masked_fill(~valid, float("inf")).sort(dim=-1).values
    count = valid.sum(dim=-1).to(values.dtype)
    position = (count - 1).clamp_min(0) * q
    low = position.floor().long()
    high = torch.minimum((low + 1).clamp(max=values.shape[-1] - 1), (count - 1).clamp_min(0).long())
    frac = (position - low.to(values.dtype)).unsqueeze(-1)
    lower = ordered.gather(-1, low.unsqueeze(-1).expand(-1, values.shape[1], 1))
    upper = ordered.gather(-1, high.unsqueeze(-1).expand(-1, values.shape[1], 1))
    result = (lower + frac * (upper - lower)).squeeze(-1)
    return torch.where(count > 0, result, torch.zeros_like(result))


def _reference_update_leakage(leakage, psd, power, beta, min_leakage):
    """KAMIR's leakage step as it was (Itakura-Saito only), out of place."""
    model = torch.matmul(leakage, psd).clamp_(min=1e-12)
    transposed = psd.transpose(-1, -2)
    inverse = model.reciprocal_()
    numerator = torch.matmul(power * inverse.square(), transposed)
    denominator = torch.matmul(inverse, transposed).clamp_(min=1e-12)
    updated = (leakage * numerator / denominator).clamp_(min=min_leakage)
    return updated.masked_fill_(torch.eye(leakage.shape[-1], dtype=torch.bool), 1.0)


def test_fast_paths_keep_the_output(shared_data, tmp_path, monkeypatch) -> None:
    """Golden test of the speed-ups: the default chain (KAMIR, spectral gate, FxNorm, sum) writes the same
    tracks, normalized tracks and mix as with the straightforward implementations they replaced (the gate's
    conv2d smoothing and full sort, one FFT over the whole signal for the EQ, KAMIR's out-of-place
    update), to float precision."""
    import importlib

    import musicfx.audio.spectral as spectral

    gate = importlib.import_module("musicfx.baselines.spectral_gate")
    kamir = importlib.import_module("musicfx.baselines.kamir")
    _session(shared_data, tmp_path / "session", "linear")
    restore(tmp_path / "session", tmp_path / "fast", progress=False, plot=False)
    monkeypatch.setattr(gate, "_smooth_gain", _reference_smooth_gain)
    monkeypatch.setattr(gate, "_masked_percentile", _reference_percentile)
    monkeypatch.setattr(spectral, "CONVOLVE_BLOCK_FFT", 1 << 40)  # one FFT over the whole signal
    monkeypatch.setattr(kamir, "_update_leakage", _reference_update_leakage)
    restore(tmp_path / "session", tmp_path / "reference", progress=False, plot=False)
    files = sorted(p.relative_to(tmp_path / "reference") for p in (tmp_path / "reference").rglob("*.wav"))
    assert len(files) == 2 * len(NAMES) + 1
    for name in files:
        fast, reference = sf.read(tmp_path / "fast" / name)[0], sf.read(tmp_path / "reference" / name)[0]
        assert np.abs(reference).max() > 1e-3
        np.testing.assert_allclose(fast, reference, atol=1e-5 * np.abs(reference).max(), err_msg=str(name))


@pytest.mark.slow
def test_benchmark_quick_run(shared_data, tmp_path, import_benchmark) -> None:
    bench_restore = import_benchmark("bench_restore")

    result = bench_restore.main(["--quick", "--shared-data", str(shared_data), "--json", str(tmp_path / "r.json")])
    lengths = result["speed"]["lengths"]
    assert result["speed"]["tracks"] == 8 and list(lengths) == ["10", "40"]
    assert all(run["this"]["wall_per_minute"] > 0 and run["this"]["peak_rss_mb"] > 100 for run in lengths.values())
    for rows in result["quality"].values():
        assert rows["chain"]["leakage"] < rows["input"]["leakage"]
    assert json.loads((tmp_path / "r.json").read_text())["choir"]["all 15"]["tracks"] == 15
