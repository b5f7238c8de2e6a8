"""AutomixTask and AutomixData: training through the task lowers the loss for each model, FxNorm-automix's
two-stage pretraining, the random console's stem dropout reaching the target, and mixing whole songs."""
from __future__ import annotations

import math
import warnings
from typing import Callable, Dict

import pytest
import torch
from torch import nn

from musicfx.errors import ConfigError, MusicfxError
from musicfx.losses.automix import AutomixLoss, StereoSTFTLoss
from musicfx.losses.waveform import WaveformLoss
from musicfx.models.console import MixingConsole
from musicfx.models.fxnorm_automix import FxNormAutomix
from musicfx.models.wave_u_net import WaveUNet
from musicfx.tasks.automix import MUSDB_STEMS, AutomixData, AutomixTask

SR = 16000
TINY_FX = dict(features=16, kernel_size=16, pool_size=16, bottleneck_features=16, skip_features=8,
               hidden_features=16, blocks=2, repeats=1, lstm_layers=1, se_expansion=2)
TINY_WUN = dict(levels=3, features=8)
TINY_CONSOLE = dict(sample_rate=SR, eq_bands=3, hidden=16, n_fft=512, hop_length=128, n_mels=16, heads=2)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _quiet_task_logging():
    with warnings.catch_warnings():
        # training_step logs through self.log, which only warns when no Trainer is attached.
        warnings.filterwarnings("ignore", message=".*self.log.*")
        warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
        yield


def _seeded(factory: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return factory()


def _data(**overrides) -> AutomixData:
    settings = dict(sample_rate=SR, segment=0.5, batch_size=2, num_workers=0, train_examples=4, val_examples=2,
                    test_examples=2, generated_items=2, generated_duration=2.0)
    settings.update(overrides)
    return AutomixData(**settings)


@pytest.fixture(scope="module")
def batch() -> Dict[str, torch.Tensor]:
    """One fixed validation batch of the built-in generator: dry stems in, the engineer's mix out."""
    data = _data()
    data.setup("validate")
    raw = next(iter(data.val_dataloader()))
    out = data.on_after_batch_transfer(raw, 0)
    assert out["stems"].shape == (2, 4, 2, SR // 2) and out["mix"].shape == (2, 2, SR // 2)
    return out


def _task(model: nn.Module, lr: float, **kwargs) -> AutomixTask:
    loss = kwargs.pop("loss", None) or AutomixLoss(StereoSTFTLoss(n_fft=512, hop_length=128, sample_rate=SR))
    return AutomixTask(model, loss=loss, sample_rate=SR, optimizer=lambda p: torch.optim.Adam(p, lr=lr), **kwargs)


def _train(task: AutomixTask, batch: Dict[str, torch.Tensor], steps: int) -> list:
    optimizer = task.configure_optimizers()
    losses = []
    for step in range(steps):
        optimizer.zero_grad()
        loss = task.training_step(batch, step)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


# ----------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("name, factory, lr, steps", [
    ("fxnorm", lambda: FxNormAutomix(**TINY_FX), 3e-3, 30),
    ("wave_u_net", lambda: WaveUNet(**TINY_WUN), 3e-3, 30),
    ("console", lambda: MixingConsole(**TINY_CONSOLE), 3e-2, 25),
])
def test_loss_falls_through_the_task(name: str, factory, lr: float, steps: int, batch) -> None:
    task = _task(_seeded(factory), lr)
    losses = _train(task, batch, steps)
    assert all(math.isfinite(v) for v in losses)
    # The mean of the last five steps, not the last one: Adam's steps are not monotonic.
    assert sum(losses[-5:]) / 5 < 0.8 * losses[0], f"{name}: {losses[0]:.3f} -> {losses[-5:]}"


def test_pretraining_then_loading_only_the_front_end(batch, tmp_path) -> None:
    pretrain = _task(_seeded(lambda: FxNormAutomix(**TINY_FX)), 3e-3, mode="pretrain", loss=WaveformLoss("l1"))
    losses = _train(pretrain, batch, 15)
    assert sum(losses[-3:]) / 3 < 0.9 * losses[0]
    path = tmp_path / "pretrain.ckpt"
    torch.save({"state_dict": pretrain.state_dict()}, path)

    fresh = _seeded(lambda: FxNormAutomix(**TINY_FX), seed=1)
    before = {key: value.clone() for key, value in fresh.state_dict().items()}
    task = _task(fresh, 1e-3, pretrained=str(path), freeze_front_back=True)
    pretrained = pretrain.model.state_dict()
    loaded = task.model.state_dict()
    front = [key for key in loaded if key.startswith("front_end.")]
    assert front and len(front) < len(loaded)
    for key, value in loaded.items():
        source = pretrained if key.startswith("front_end.") else before
        assert torch.equal(value, source[key]), key
    assert not torch.equal(loaded["se.net.0.weight"], pretrained["se.net.0.weight"])  # really a fresh model
    assert all(not p.requires_grad for p in task.model.front_end.parameters())
    assert all(p.requires_grad for p in task.model.mixer.parameters())
    # The frozen front end stays as loaded while the mixer trains.
    _train(task, batch, 2)
    assert torch.equal(task.model.front_end.encoder.weight, pretrained["front_end.encoder.weight"])

    with pytest.raises(MusicfxError, match="no front-end weights"):
        wun = _task(WaveUNet(**TINY_WUN), 1e-3)
        torch.save({"state_dict": wun.state_dict()}, tmp_path / "wun.ckpt")
        _task(FxNormAutomix(**TINY_FX), 1e-3, pretrained=str(tmp_path / "wun.ckpt"))
    with pytest.raises(ConfigError, match="forward_autoencoder"):
        _task(WaveUNet(**TINY_WUN), 1e-3, mode="pretrain")


# ------------------------------------------------------------------------------------------- augmentation
def test_console_dropout_reaches_the_target(monkeypatch) -> None:
    data = _data(stem_dropout=0.0, reverb_prob=1.0, compressor_prob=1.0)
    data.setup("fit")
    raw = next(iter(data.train_dataloader()))
    monkeypatch.setattr(AutomixData, "training_batch", property(lambda self: True))

    def scene(keep) -> Dict[str, torch.Tensor]:
        copy = dict(raw, keep=torch.tensor(keep, dtype=torch.bool).expand(2, 4).clone())
        return data.on_after_batch_transfer(copy, 0)

    # Each stem's part of the target, alone (stems are processed one by one, so parts add up).
    parts = [scene([s == k for s in range(4)])["mix"] for k in range(4)]
    dropped = scene([True, False, True, False])
    torch.testing.assert_close(dropped["mix"], parts[0] + parts[2], atol=1e-5, rtol=0)
    full = scene([True] * 4)
    torch.testing.assert_close(full["mix"], sum(parts), atol=1e-5, rtol=0)
    # The model hears exactly the kept stems, each through its random channel strip.
    assert torch.count_nonzero(dropped["stems"][:, [1, 3]]) == 0
    torch.testing.assert_close(dropped["stems"][:, [0, 2]], full["stems"][:, [0, 2]])
    assert not torch.allclose(full["stems"], raw["stems"], atol=1e-3)
    # Outside training the console is off: inputs are the stems as they are, the target is unchanged.
    monkeypatch.setattr(AutomixData, "training_batch", property(lambda self: False))
    clean = data.on_after_batch_transfer(dict(raw), 0)
    torch.testing.assert_close(clean["stems"], raw["stems"])
    torch.testing.assert_close(clean["mix"], full["mix"])


# ------------------------------------------------------------------------------------------------- mixing
def test_mix_runs_a_whole_song_at_another_rate() -> None:
    # An untrained console is neutral (0 dB, centred, flat EQ, ratio 1.003): the mix is the sum of the
    # stems panned centre, i.e. 3 dB down, whatever the chunking and the resampling to the model's rate.
    task = _task(_seeded(lambda: MixingConsole(**TINY_CONSOLE)), 1e-3).eval()
    rate, seconds = 32000, 1.3
    t = torch.arange(int(rate * seconds)) / rate
    freqs = torch.tensor([220.0, 55.0, 110.0, 1760.0])
    stems = (0.2 * torch.sin(2 * math.pi * freqs[:, None] * t)).unsqueeze(1)  # (4, 1, time): mono stems
    mix = task.mix(stems, rate, segment=0.5, overlap=0.25)
    assert mix.shape == (2, t.numel())
    expected = (stems.sum(0) / math.sqrt(2.0)).expand(2, -1)
    edge = rate // 50  # the resamplers' edges
    torch.testing.assert_close(mix[:, edge:-edge], expected[:, edge:-edge], atol=5e-3, rtol=0)
    with pytest.raises(ValueError, match="vocals, drums, bass, other"):
        task.mix(stems[:3], rate)
    assert task.stems == MUSDB_STEMS


# --------------------------------------------------------------------------------------------- benchmark
@pytest.mark.slow
def test_benchmark_smoke(shared_data, tmp_path, capsys, import_benchmark) -> None:
    """benchmarks/bench_automix.py --quick: every part runs and reports numbers that make sense."""
    import json

    bench_automix = import_benchmark("bench_automix")

    out = tmp_path / "automix.json"
    code = bench_automix.main(["--quick", "--quiet", "--devices", "cpu", "--shared", str(shared_data),
                               "--workdir", str(tmp_path / "work"), "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Machine: ") and "### Generator test split" in printed and "### NZ Tour" in printed
    report = json.loads(out.read_text())
    assert all(value > 0 for value in report["console"]["cpu"].values())
    normalize = report["normalize"]
    assert normalize["seconds"] == pytest.approx(3.0) and normalize["per_minute"]["song"] > 0
    # The loudness stage lands every stem on its target.
    assert all(d["after"]["loudness"] < 0.1 < d["before"]["loudness"] for d in normalize["distances"].values())
    assert {run["steps"] for run in report["training"].values()} == {2}
    for table in report["metrics"].values():
        assert set(table) == {bench_automix.BASELINE, *bench_automix.MODELS}
        assert all(0 <= row["overall"] < 10 for row in table.values())
