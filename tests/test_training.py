"""Training end to end through the CLI: DDP on CPU, kill-and-resume, W&B offline, checkpoint loading."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = str(REPO / "recipes/quickstart.yaml")
SMALL = [
    "--trainer.accelerator=cpu",
    "--data.init_args.num_workers=0",
    "--data.init_args.batch_size=2",
    "--data.init_args.segment=0.5",
    "--data.init_args.val_examples=4",
    "--trainer.limit_val_batches=1",
    "--trainer.max_time=null",
]


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO), env.get("PYTHONPATH", "")]),
        WANDB_MODE="offline", WANDB_SILENT="true", MUSICFX_CACHE=str(tmp_path / "cache"),
        OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
    )
    return env


def _musicfx(*args: str) -> list:
    return [sys.executable, "-m", "musicfx.cli", *args]


def test_ddp_two_cpu_processes_bf16_see_different_examples(tmp_path) -> None:
    record = tmp_path / "record"
    command = _musicfx(
        "fit", "-c", QUICKSTART, "-c", str(REPO / "recipes/trainer/ddp.yaml"),
        "-c", str(REPO / "recipes/trainer/bf16-mixed.yaml"), *SMALL,
        "--trainer.devices=2", "--trainer.max_steps=3", "--trainer.val_check_interval=3",
        "--trainer.callbacks+=record_batches.RecordBatches", f"--trainer.callbacks.init_args.folder={record}",
    )
    result = subprocess.run(command, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((record / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(rank["world"] == 2 and rank["precision"] == "bf16-mixed" for rank in ranks)
    seen = [{x for batch in rank["batches"] for x in batch} for rank in ranks]
    assert len(ranks[0]["batches"]) == 3 and not (seen[0] & seen[1])


def test_killed_run_resumes_from_last_checkpoint(tmp_path) -> None:
    checkpoints = tmp_path / "runs/quickstart/checkpoints"
    overrides = [*SMALL, "--trainer.val_check_interval=1000", "--data.init_args.train_examples=100000"]
    env = _env(tmp_path)
    process = subprocess.Popen(
        _musicfx("fit", "-c", QUICKSTART, *overrides, "--trainer.max_steps=100000"),
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    last = checkpoints / "last.ckpt"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and process.poll() is None:
            if last.exists() and torch.load(last, map_location="cpu", weights_only=False)["global_step"] >= 50:
                break
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # a hard kill, as a preempted node would
        process.wait()
    killed_at = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert killed_at >= 50
    target = killed_at + 5
    result = subprocess.run(
        _musicfx("fit", "-c", QUICKSTART, *overrides, f"--trainer.max_steps={target}", "--ckpt_path=last"),
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Restoring states from the checkpoint" in result.stderr + result.stdout
    final = torch.load(last, map_location="cpu", weights_only=False)
    assert final["global_step"] == target


def test_wandb_offline_run_folder_has_metrics_config_audio_images(tmp_path) -> None:
    pytest.importorskip("wandb")
    command = _musicfx(
        "fit", "-c", QUICKSTART, "-c", str(REPO / "recipes/logger/wandb.yaml"), *SMALL,
        "--trainer.max_steps=2", "--trainer.val_check_interval=2", "--trainer.logger.init_args.save_dir=wb",
    )
    result = subprocess.run(command, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "wb/wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = runs[0] / "files"
    # Offline runs keep history, summary and config as records in the run's .wandb file (what `wandb sync`
    # uploads); media are written beside it.
    records = next(runs[0].glob("*.wandb")).read_bytes()
    for metric in (b"train/loss", b"val/si_sdr", b"val/si_sdri"):
        assert metric in records, metric
    assert b"musicfx.models.MusicECAN" in records  # the recipe's config
    assert list(files.glob("media/audio/**/*.wav")), "no audio logged"
    assert list(files.glob("media/images/**/*.png")), "no spectrogram logged"


def test_checkpoint_loads_and_denoises(trained_checkpoint: Path) -> None:
    import musicfx

    # Stopped by max_steps=3 between two every-50-steps saves: the final state is still saved.
    assert torch.load(trained_checkpoint, map_location="cpu", weights_only=False)["global_step"] == 3
    task = musicfx.load(trained_checkpoint)
    assert not task.training and task.sample_rate == 22050
    audio = torch.randn(2, 30000) * 0.1
    out = task.denoise(audio, 44100)
    assert out.shape == audio.shape and torch.isfinite(out).all()
    out_fn = musicfx.denoise(audio[0], 44100, model=trained_checkpoint)
    assert out_fn.shape == audio[0].shape
