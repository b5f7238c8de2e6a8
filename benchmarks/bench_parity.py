"""Parity of musicfx's Open-Unmix, BS-RoFormer and Mel-Band RoFormer with the reference packages.

For several configurations, a reference model (``openunmix`` 1.3.0 ``Separator``, ``bs_roformer``
0.3.10 ``BSRoformer`` / ``MelBandRoformer``) gets random weights (every vector too, and Open-Unmix's input
statistics from the audio, so nothing is left at an identity value), musicfx converts them
(``OpenUnmix.from_openunmix``, ``BSRoFormer.from_bs_roformer``, ``MelBandRoFormer.from_mel_band_roformer``)
and both separate the same real recording: the sum of the five stems of ``sisec2011-nz-tour`` in
``../shared/data``. Printed per configuration: the largest relative error of the outputs (L2 norm of the
difference over the reference's, and max |difference| over max |reference|) and, at the same size, the CPU
inference time of musicfx over the reference's (median of ``--repeats`` calls after a warm-up, the two alternating).

Run it in the peers' environment (``bash benchmarks/peers.sh``)::

    .venv-peers/bin/python benchmarks/bench_parity.py [--seconds 8] [--repeats 3] [--threads 1] \\
        [--markdown PATH] [--json PATH]
    .venv-peers/bin/python benchmarks/bench_parity.py --golden tests/data   # rewrite the golden files

``--golden DIR`` writes the small reference outputs ``tests/test_parity.py`` checks in CI, where the peers
are not installed: tiny configurations, a 1024-sample excerpt of the same recording, fixed seeds.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
import soundfile
import torch
from torch import Tensor, nn

import common
from musicfx.models.bs_roformer import BSRoFormer
from musicfx.models.mel_band_roformer import MelBandRoFormer
from musicfx.models.open_unmix import OpenUnmix

SONG = "sisec2011-nz-tour"
GOLDEN_SAMPLES = 1024
GOLDEN_OFFSET = 5 * 44100  # a loud stretch whose STFTs have no exactly-zero bin (see write_golden)


# ------------------------------------------------------------------------------------------------ peers
def import_peers() -> Dict[str, str]:
    """Import the reference packages (Open-Unmix with a soundfile stand-in for torchaudio if needed)."""
    import bench_separation_data

    bench_separation_data.torchaudio_backend()
    with contextlib.redirect_stderr(io.StringIO()):
        import bs_roformer  # noqa: F401
        import openunmix.model  # noqa: F401
    return {name: importlib.metadata.version(name) for name in ("openunmix", "bs-roformer")}


def load_mix(shared: Path, seconds: float, offset: int = 0) -> Tensor:
    """The sum of the recording's stems, ``(1, 2, samples)`` float32."""
    folder = common.require_folder(shared / SONG, "the multitrack recording")
    stems = [soundfile.read(str(path), dtype="float32", always_2d=True)[0] for path in sorted(folder.glob("*.wav"))]
    if not stems:
        raise SystemExit(f"no stems in {folder}")
    mix = torch.from_numpy(np.sum(stems, axis=0).T.copy())
    samples = int(round(seconds * 44100))
    return mix[None, :, offset: offset + samples].contiguous()


def _randomize(module: nn.Module, generator: torch.Generator) -> None:
    """Move every vector (norm gains, biases, batch-norm statistics) away from its identity initialisation."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.dim() == 1 and not name.endswith("freqs") and "input_" not in name:
                centre = 1.0 if name.endswith(("gamma", "weight", "output_scale", "output_mean")) else 0.0
                param.copy_(centre + 0.2 * torch.randn(param.shape, generator=generator))
        for layer in module.modules():
            if isinstance(layer, nn.BatchNorm1d):
                layer.running_mean.copy_(0.3 * torch.randn(layer.running_mean.shape, generator=generator))
                layer.running_var.copy_(0.5 + torch.rand(layer.running_var.shape, generator=generator))


def umx_reference(config: Mapping[str, Any], mix: Tensor, seed: int) -> nn.Module:
    """An ``openunmix`` Separator with random weights, its input statistics those of ``mix``."""
    from openunmix.model import OpenUnmix as ReferenceNetwork
    from openunmix.model import Separator

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n_fft, hop = config["n_fft"], config["hop"]
    spec = torch.stft(mix[0], n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).abs().mean(0)
    mean, std = spec.mean(dim=1).numpy(), spec.std(dim=1).clamp_min(1e-3).numpy()
    targets = {}
    for name in config["targets"]:
        network = ReferenceNetwork(
            nb_bins=n_fft // 2 + 1, nb_channels=2, hidden_size=config["hidden"], nb_layers=config["layers"],
            max_bin=config["max_bin"], input_mean=mean, input_scale=std,
        )
        _randomize(network, generator)
        targets[name] = network
    return Separator(
        targets, niter=config["niter"], softmask=config.get("softmask", False), residual=config.get("residual", False),
        n_fft=n_fft, n_hop=hop, nb_channels=2, wiener_win_len=config.get("window", 300),
    ).eval()


def roformer_reference(config: Mapping[str, Any], seed: int, mel: bool) -> nn.Module:
    """A ``bs_roformer`` BSRoformer / MelBandRoformer with random weights."""
    from bs_roformer import BSRoformer, MelBandRoformer

    torch.manual_seed(seed)
    model = (MelBandRoformer if mel else BSRoformer)(**config)
    _randomize(model, torch.Generator().manual_seed(seed))
    return model.eval()


def convert(kind: str, reference: nn.Module, config: Mapping[str, Any]) -> nn.Module:
    if kind == "open_unmix":
        return OpenUnmix.from_openunmix(reference)
    if kind == "bs_roformer":
        return BSRoFormer.from_bs_roformer(reference.state_dict(), **config)
    return MelBandRoFormer.from_mel_band_roformer(reference.state_dict(), **config)


# ----------------------------------------------------------------------------------------------- measures
def errors(ours: Tensor, theirs: Tensor) -> Tuple[float, float]:
    """``(||a - b|| / ||b||, max|a - b| / max|b|)`` over the reference's length (it may drop a last hop)."""
    ours = ours[..., : theirs.shape[-1]].reshape(theirs.shape).double()
    theirs = theirs.double()
    difference = ours - theirs
    return (difference.norm() / theirs.norm()).item(), (difference.abs().max() / theirs.abs().max()).item()


def _as_stems(output: Tensor, batch: int) -> Tensor:
    """The references drop the stem axis of one-stem models: put it back, ``(batch, stems, channels, time)``."""
    return output if output.dim() == 4 else output.unsqueeze(1)


def median_seconds(ours: Callable[[], Any], theirs: Callable[[], Any], repeats: int) -> Tuple[float, float]:
    """Median seconds of each call; the two alternate, so a change in the machine's load hits both alike."""
    ours(), theirs()  # warm-up: allocations, kernels chosen
    times: Tuple[List[float], List[float]] = ([], [])
    for _ in range(repeats):
        for call, into in ((ours, times[0]), (theirs, times[1])):
            start = time.perf_counter()
            call()
            into.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


UMX_CONFIGS: List[Tuple[str, Dict[str, Any]]] = [
    ("umxhq size (4 targets, 512, STFT 4096/1024), Wiener off",
     dict(targets=("vocals", "drums", "bass", "other"), hidden=512, layers=3, n_fft=4096, hop=1024, max_bin=1487,
          niter=0)),
    ("umxhq size, Wiener 1 iteration",
     dict(targets=("vocals", "drums", "bass", "other"), hidden=512, layers=3, n_fft=4096, hop=1024, max_bin=1487,
          niter=1)),
    ("2 targets, 64, STFT 2048/512, softmask + residual, 2 iterations, 100-frame windows",
     dict(targets=("vocals", "drums"), hidden=64, layers=2, n_fft=2048, hop=512, max_bin=700, niter=2,
          softmask=True, residual=True, window=100)),
]
V7 = (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)
BS_CONFIGS: List[Tuple[str, Dict[str, Any]]] = [
    ("MSST MUSDB layout: stereo, 4 stems, dim 128, depth 4, hop 441",
     dict(dim=128, depth=4, stereo=True, num_stems=4, time_transformer_depth=1, freq_transformer_depth=1,
          freqs_per_bands=V7, stft_hop_length=441, mask_estimator_depth=2)),
    ("package defaults: mono, 1 stem, 2-layer transformers, hop 512, dim 64, depth 2",
     dict(dim=64, depth=2)),
]
MEL_CONFIGS: List[Tuple[str, Dict[str, Any]]] = [
    ("stereo, 2 stems, 60 mel bands, dim 64, depth 2, hop 441",
     dict(dim=64, depth=2, stereo=True, num_stems=2, time_transformer_depth=1, freq_transformer_depth=1,
          num_bands=60, stft_hop_length=441)),
]


def _report(row: Dict[str, Any]) -> None:
    """One finished configuration on stderr, so a long run shows its progress."""
    print(f"  {row['model']}, {row['config']}: waveform error {max(row['waveform_error']):.1e}, "
          f"ours / theirs {row['ours_s']:.3f} / {row['theirs_s']:.3f} s", file=sys.stderr, flush=True)


def run(shared: Path, seconds: float, repeats: int) -> List[Dict[str, Any]]:
    mix = load_mix(shared, seconds)
    rows: List[Dict[str, Any]] = []
    for index, (label, config) in enumerate(UMX_CONFIGS):
        reference = umx_reference(config, mix, seed=index)
        ours = convert("open_unmix", reference, config)
        with torch.no_grad():
            theirs_out, ours_out = reference(mix), ours(mix)
            spec = reference.complexnorm(reference.stft(mix))
            theirs_est = torch.stack([net(spec) for net in reference.target_models.values()], dim=1)
            ours_est = ours.estimate_magnitudes(mix)
            row = dict(model="Open-Unmix", peer="openunmix", config=label,
                       spectrogram_error=errors(ours_est, theirs_est),
                       waveform_error=errors(ours_out, theirs_out[:, : len(config["targets"])]))
            row["ours_s"], row["theirs_s"] = median_seconds(lambda: ours(mix), lambda: reference(mix), repeats)
        rows.append(row)
        _report(row)
    for mel, configs in ((False, BS_CONFIGS), (True, MEL_CONFIGS)):
        for index, (label, config) in enumerate(configs):
            audio = mix if config.get("stereo") else mix.mean(dim=1, keepdim=True)
            reference = roformer_reference(config, seed=10 + index, mel=mel)
            ours = convert("mel_band_roformer" if mel else "bs_roformer", reference, config)
            with torch.no_grad():
                theirs_out = _as_stems(reference(audio), audio.shape[0])
                row = dict(model="Mel-Band RoFormer" if mel else "BS-RoFormer", peer="bs-roformer", config=label,
                           spectrogram_error=None, waveform_error=errors(ours(audio), theirs_out))
                row["ours_s"], row["theirs_s"] = median_seconds(
                    lambda: ours(audio), lambda: reference(audio), repeats)
            rows.append(row)
            _report(row)
    return rows


# ------------------------------------------------------------------------------------------------ golden
GOLDEN_UMX = dict(targets=("vocals", "drums"), hidden=16, layers=2, n_fft=128, hop=32, max_bin=40, window=16)
GOLDEN_BS = dict(dim=8, depth=1, stereo=True, num_stems=2, time_transformer_depth=1, freq_transformer_depth=1,
                 freqs_per_bands=(4,) * 8 + (8,) * 2 + (17,), dim_head=4, heads=2, stft_n_fft=128,
                 stft_win_length=128, stft_hop_length=32, mask_estimator_depth=1)
GOLDEN_MEL = dict(dim=8, depth=1, stereo=True, num_stems=1, time_transformer_depth=1, freq_transformer_depth=1,
                  num_bands=8, dim_head=4, heads=2, stft_n_fft=64, stft_win_length=64, stft_hop_length=16,
                  mask_estimator_depth=1, match_input_audio_length=True)


def write_golden(shared: Path, folder: Path, versions: Mapping[str, str]) -> List[Path]:
    """Tiny reference models' weights, a real excerpt and the references' outputs, for tests/test_parity.py."""
    folder.mkdir(parents=True, exist_ok=True)
    mix = load_mix(shared, GOLDEN_SAMPLES / 44100, offset=GOLDEN_OFFSET)
    for n_fft, hop in ((GOLDEN_UMX["n_fft"], GOLDEN_UMX["hop"]), (256, 64)):
        spec = torch.stft(mix[0], n_fft, hop, window=torch.hann_window(n_fft), return_complex=True)
        # openunmix's Wiener filter turns exactly-zero mixture bins into 1 + 0j (its atan2 writes into the
        # mixture); musicfx keeps them 0, the one known difference: keep such bins out of the parity data.
        if (spec == 0).any():
            raise SystemExit(f"the golden excerpt has exactly-zero STFT bins (n_fft {n_fft}); move GOLDEN_OFFSET")
    written = []
    outputs: Dict[str, Tensor] = {}
    reference = umx_reference(dict(GOLDEN_UMX, niter=0), mix, seed=0)
    with torch.no_grad():
        spec = reference.complexnorm(reference.stft(mix))
        estimates = torch.stack([net(spec) for net in reference.target_models.values()], dim=1)
        for niter in (0, 1):
            reference.niter = niter
            outputs[f"niter{niter}"] = reference(mix)
    umx = dict(
        peer=f"openunmix {versions['openunmix']}", config=dict(GOLDEN_UMX, sample_rate=44100),
        state_dicts={name: net.state_dict() for name, net in reference.target_models.items()},
        input=mix, estimates=estimates, outputs=outputs,
    )
    written.append(_save(umx, folder / "parity_open_unmix.pt"))
    for mel, config, name in ((False, GOLDEN_BS, "bs_roformer"), (True, GOLDEN_MEL, "mel_band_roformer")):
        reference = roformer_reference(config, seed=1, mel=mel)
        with torch.no_grad():
            output = _as_stems(reference(mix), 1)
        state = {k: v for k, v in reference.state_dict().items()}
        entry = dict(peer=f"bs-roformer {versions['bs-roformer']}", config=dict(config), state_dict=state,
                     input=mix, output=output)
        written.append(_save(entry, folder / f"parity_{name}.pt"))
    return written


def _save(entry: Dict[str, Any], path: Path) -> Path:
    tmp = path.with_suffix(".tmp")
    torch.save(entry, tmp)
    tmp.replace(path)
    return path


# -------------------------------------------------------------------------------------------------- main
def _format(rows: List[Dict[str, Any]]) -> str:
    table = []
    for row in rows:
        spectrogram = row["spectrogram_error"]
        table.append([
            row["model"], row["config"],
            "" if spectrogram is None else f"{spectrogram[0]:.1e} / {spectrogram[1]:.1e}",
            f"{row['waveform_error'][0]:.1e} / {row['waveform_error'][1]:.1e}",
            f"{row['ours_s']:.3f}", f"{row['theirs_s']:.3f}", f"{row['ours_s'] / row['theirs_s']:.2f}",
        ])
    return common.markdown_table(
        ["model", "configuration", "spectrogram error (L2 / max)", "waveform error (L2 / max)", "musicfx s",
         "reference s", "ours / theirs"], table)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=common.default_shared_data())
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the excerpt separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both")
    parser.add_argument("--golden", type=Path, help="write the golden files for tests/test_parity.py here and stop")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        versions = import_peers()
    except ImportError as missing:
        print(f"bench_parity: the reference packages do not import ({missing}); run bash benchmarks/peers.sh and "
              "use .venv-peers/bin/python", file=sys.stderr)
        return 2
    if args.golden is not None:
        for path in write_golden(args.shared, args.golden, versions):
            print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
        return 0
    info = common.machine_info()
    rows = run(args.shared, args.seconds, args.repeats)
    text = "\n".join([
        common.machine_line(info),
        f"References: openunmix {versions['openunmix']}, bs-roformer {versions['bs-roformer']}; "
        f"{args.seconds:g} s of {SONG} (sum of its stems), float32, {args.threads} thread(s), "
        f"median of {args.repeats}.",
        "",
        _format(rows),
    ])
    print(text)
    worst = max(max(r["waveform_error"]) for r in rows)
    print(f"\nlargest relative error: {worst:.1e}")
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(dict(machine=info, versions=versions, rows=rows), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
