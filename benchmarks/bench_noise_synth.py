"""Throughput of the batched noise-scene synthesis (musicfx.synth.noise).

Examples per second for batches of 16 clips of 10 s at 44.1 kHz, mono and stereo, for each procedural
category and for a whole :class:`NoiseSynth` scene (categories drawn uniformly, noise mixed into clean
audio at a random SNR), on the CPU and on CUDA when present::

    python benchmarks/bench_noise_synth.py [--batch 16] [--seconds 10] [--repeats 3] [--threads N]
"""
from __future__ import annotations

import argparse
import time
from typing import Callable, Dict, List, Sequence

import torch
from torch.utils.data import default_collate

from musicfx.synth.noise import GENERATORS, NOISE_CATEGORIES, NoiseSynth


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(run: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Best wall time of ``run`` in seconds over ``repeats``, after one warm-up call (plans FFTs, fills
    allocators). The best, not the median: on a shared machine the other processes only ever add time."""
    run()
    _sync(device)
    times: List[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def bench(
    device: torch.device, batch: int, seconds: float, sample_rate: int, repeats: int
) -> Dict[str, Dict[int, float]]:
    """Examples per second, by workload name and channel count."""
    frames = int(seconds * sample_rate)
    results: Dict[str, Dict[int, float]] = {}
    synth = NoiseSynth(sample_rate)
    for channels in (1, 2):
        # Distinct seeds per repeat would not change the cost: the work does not depend on their values.
        seeds = torch.arange(1000, 1000 + batch, dtype=torch.int64, device=device)
        for name in NOISE_CATEGORIES:
            elapsed = _time(lambda: GENERATORS[name](seeds, channels, frames, sample_rate), device, repeats)
            results.setdefault(name, {})[channels] = batch / elapsed
        params = default_collate([synth.draw(torch.Generator().manual_seed(i)) for i in range(batch)])
        params = {key: value.to(device) for key, value in params.items()}
        clean = 0.1 * torch.randn(batch, channels, frames, generator=torch.Generator().manual_seed(0)).to(device)
        elapsed = _time(lambda: synth(clean, params), device, repeats)
        results.setdefault("mixed scene", {})[channels] = batch / elapsed
    return results


def print_table(
    device: str, results: Dict[str, Dict[int, float]], batch: int, seconds: float, sample_rate: int
) -> None:
    print(f"\n{device}: batches of {batch} x {seconds:g} s at {sample_rate} Hz")
    print("examples per second (x real time)")
    print(f"{'workload':<14}{'mono':>16}{'stereo':>16}")
    for name, by_channels in results.items():
        cells = [f"{by_channels[c]:8.1f} ({by_channels[c] * seconds:6.0f}x)" for c in (1, 2)]
        print(f"{name:<14}{cells[0]:>16}{cells[1]:>16}")


def main(argv: Sequence[str] = ()) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--devices", default="cpu,cuda", help="comma-separated; cuda is skipped when absent")
    args = parser.parse_args(list(argv) or None)
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in args.devices.split(","):
        if name == "cuda" and not torch.cuda.is_available():
            print("\ncuda: not available, skipped")
            continue
        device = torch.device(name)
        if name == "cuda":
            label = f"cuda ({torch.cuda.get_device_name(device)})"
        else:
            label = f"cpu ({torch.get_num_threads()} threads)"
        with torch.no_grad():
            results = bench(device, args.batch, args.seconds, args.sample_rate, args.repeats)
        print_table(label, results, args.batch, args.seconds, args.sample_rate)


if __name__ == "__main__":
    main()
