"""How much faster is ``musicfx.metrics.museval_sdr`` than ``museval.evaluate``, and does it agree?

Scene: 4 stereo stems of real music (SiSEC 2011 "Ultimate NZ Tour", tiled to ``--seconds``), estimates
made from them the way a separator errs: a little of every other stem leaks in, plus white noise.
museval is timed as users call it (``museval.evaluate(references, estimates, win=44100, hop=44100)``,
what ``museval.eval_mus_track`` runs): it computes SDR, SIR, ISR and SAR together, and its 512-tap
distortion filters are the expensive part, so the comparison is "what it costs to get MUSDB SDRs".

Run: ``python benchmarks/bench_museval_sdr.py [--seconds 30] [--repeats 5]``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable, List, Tuple

import numpy as np
import torch

from musicfx.audio.io import read_audio
from musicfx.metrics import museval_sdr

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("MUSICFX_SHARED_DATA", REPO.parent / "shared" / "data")) / "sisec2011-nz-tour"
STEMS = ("vocals", "drums", "bass", "guitar")
RATE = 44100


def load_scene(folder: Path, seconds: float, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Real stems tiled to ``seconds``, and perturbed estimates of them.

    Returns:
        ``(estimates, references)``, float32 ``(sources, channels, time)``.
    """
    length = int(seconds * RATE)
    stems: List[torch.Tensor] = []
    for name in STEMS:
        audio, _ = read_audio(folder / f"{name}.wav", sample_rate=RATE, channels=2)
        repeats = -(-length // audio.shape[-1])
        stems.append(audio.repeat(1, repeats)[:, :length])
    references = torch.stack(stems)
    gen = torch.Generator().manual_seed(seed)
    sources = references.shape[0]
    leakage = 0.1 * torch.rand(sources, sources, generator=gen).fill_diagonal_(0)
    noise = torch.randn(references.shape, generator=gen)
    noise = noise * 0.05 * references.square().mean(dim=(-2, -1), keepdim=True).sqrt()
    estimates = references + torch.einsum("ij,jct->ict", leakage, references) + noise
    return estimates, references


def time_call(fn: Callable[[], object], repeats: int, synchronize: Callable[[], None]) -> Tuple[float, object]:
    """Best of ``repeats`` wall-clock times after one warm-up call."""
    result = fn()
    synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        synchronize()
        best = min(best, time.perf_counter() - start)
    return best, result


def compare(name: str, ours: np.ndarray, theirs: np.ndarray) -> float:
    """Print how ``ours`` agrees with museval's windows; return the max abs difference over scored windows."""
    if ours.shape != theirs.shape:
        raise SystemExit(f"{name}: shape {ours.shape} differs from museval's {theirs.shape}")
    same_nan = bool(np.array_equal(np.isnan(ours), np.isnan(theirs)))
    scored = np.isfinite(ours) & np.isfinite(theirs)
    diff = float(np.abs(ours[scored] - theirs[scored]).max()) if scored.any() else float("nan")
    print(f"  {name}: NaN windows identical: {same_nan}; max |SDR - museval SDR| = {diff:.3g} dB "
          f"over {int(scored.sum())} windows")
    return diff


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each stem (default 30)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with the NZ Tour stems")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of the torch version (best is kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-museval", action="store_true", help="time only the torch version")
    args = parser.parse_args(argv)

    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: not found; pass --data or set MUSICFX_SHARED_DATA")
    estimates, references = load_scene(args.data, args.seconds, args.seed)
    sources, channels, length = references.shape
    print(f"scene: {sources} stems x {channels} channels x {length / RATE:.1f} s at {RATE} Hz; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")

    cpu_time, cpu_sdr = time_call(lambda: museval_sdr(estimates, references, RATE), args.repeats, lambda: None)
    print(f"musicfx.metrics.museval_sdr, CPU: {cpu_time * 1e3:.1f} ms")
    cuda_time = None
    if torch.cuda.is_available():
        est_gpu, ref_gpu = estimates.cuda(), references.cuda()
        cuda_time, cuda_sdr = time_call(
            lambda: museval_sdr(est_gpu, ref_gpu, RATE), args.repeats, torch.cuda.synchronize
        )
        print(f"musicfx.metrics.museval_sdr, CUDA ({torch.cuda.get_device_name()}, inputs on the GPU): "
              f"{cuda_time * 1e3:.2f} ms")

    if args.skip_museval:
        return
    try:
        import museval
    except ImportError:
        raise SystemExit("museval is not installed: pip install museval (or pass --skip-museval)") from None
    # musdb hands museval float64 (time, channels) arrays; the values are the same float32 samples
    ref_np = references.transpose(1, 2).double().numpy()
    est_np = estimates.transpose(1, 2).double().numpy()
    start = time.perf_counter()
    theirs, _, _, _ = museval.evaluate(ref_np, est_np, win=RATE, hop=RATE)
    museval_time = time.perf_counter() - start
    print(f"museval.evaluate (SDR, ISR, SIR, SAR; one run): {museval_time:.2f} s")

    print(f"speed-up, CPU: {museval_time / cpu_time:.0f}x")
    if cuda_time is not None:
        print(f"speed-up, CUDA: {museval_time / cuda_time:.0f}x")
    print("agreement with museval (per window):")
    compare("CPU", cpu_sdr.numpy(), theirs)
    if cuda_time is not None:
        compare("CUDA", cuda_sdr.cpu().numpy(), theirs)
    print("median SDR per stem (museval / ours): " + ", ".join(
        f"{name} {np.nanmedian(theirs[j]):.3f} / {np.nanmedian(cpu_sdr[j].numpy()):.3f}"
        for j, name in enumerate(STEMS)
    ))


if __name__ == "__main__":
    main(sys.argv[1:])
