"""Every bad input on every command: exit status 1, one ``musicfx: error:`` line naming the file or option,
no traceback, and nothing written (no file, no folder). The table in docs/cli.md lists the same cases."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest
import soundfile as sf
import torch

import musicfx.api
from musicfx.cli import ERROR_STATUS, main

SR = 8000
#: A folder nobody may create: /sys is read-only (EPERM or EROFS) even for root.
UNWRITABLE = Path("/sys/musicfx-test-output")


# ---------------------------------------------------------------------------------------- stand-in tasks
class _Identity(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _Halves(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([0.5 * x, 0.5 * x], dim=1)


class _Sum(torch.nn.Module):
    def forward(self, stems: torch.Tensor) -> torch.Tensor:
        return stems.sum(dim=1)


class _DenoiseTask:
    sample_rate, channels, model = SR, 2, _Identity()

    def denoise(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        return audio


class _SeparateTask:
    sample_rate, channels, model, sources = SR, 2, _Halves(), ("vocals", "accompaniment")


class _DebleedTask:
    sample_rate, channels, model, tracks = SR, 1, _Identity(), ("vocals", "drums")

    def debleed(self, tracks: torch.Tensor, sample_rate: int) -> torch.Tensor:
        return tracks


class _MixTask:
    sample_rate, channels, model, stems, mode = SR, 2, _Sum(), ("vocals", "drums", "bass", "other"), "mix"

    def mix(self, stems: torch.Tensor, sample_rate: int) -> torch.Tensor:
        return stems.sum(0)


TASKS = {"denoise.ckpt": _DenoiseTask, "separate.ckpt": _SeparateTask, "debleed.ckpt": _DebleedTask,
         "mix.ckpt": _MixTask}


# ------------------------------------------------------------------------------------------- workspace
def _music(seconds: float = 1.0, channels: int = 2) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return np.stack([0.2 * np.sin(2 * np.pi * (220 + 30 * c) * t) for c in range(channels)], axis=1).astype(np.float32)


@pytest.fixture()
def space(tmp_path: Path, monkeypatch) -> Path:
    """songs/a.wav, tracks/{vocals,drums}.wav, stems/{vocals,drums,bass,other}.wav, refs/ and est/ (one song
    each); ``musicfx.api.load`` returns the stand-in task its file name names."""
    for folder, names in (("songs", ["a"]), ("tracks", ["vocals", "drums"]),
                          ("stems", ["vocals", "drums", "bass", "other"]), ("refs", ["vocals", "drums"]),
                          ("est", ["vocals", "drums"])):
        (tmp_path / folder).mkdir()
        for name in names:
            sf.write(tmp_path / folder / f"{name}.wav", _music(), SR, subtype="FLOAT")
    real_load = musicfx.api.load

    def load(checkpoint, device="cpu", **options):
        task = TASKS.get(Path(checkpoint).name)
        return task() if task is not None else real_load(checkpoint, device=device, **options)

    monkeypatch.setattr(musicfx.api, "load", load)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _silent(space: Path, folder: str) -> None:
    for path in (space / folder).glob("*.wav"):
        sf.write(path, np.zeros_like(_music()), SR, subtype="FLOAT")


def _nan(space: Path, folder: str) -> None:
    for path in (space / folder).glob("*.wav"):
        data = _music()
        data[SR // 2, 0] = np.nan
        sf.write(path, data, SR, subtype="FLOAT")


# What each command needs to run: (argv with OUT for the output, the input folder a bad input spoils).
COMMANDS: Dict[str, Tuple[List[str], str]] = {
    "denoise": (["denoise", "songs/a.wav", "-o", "OUT", "--ckpt", "denoise.ckpt", "-q"], "songs"),
    "separate": (["separate", "songs/a.wav", "-o", "OUT", "--ckpt", "separate.ckpt", "-q"], "songs"),
    "debleed": (["debleed", "tracks", "-o", "OUT", "--ckpt", "debleed.ckpt", "-q"], "tracks"),
    "mix": (["mix", "stems", "-o", "OUT/mix.wav", "--ckpt", "mix.ckpt", "-q"], "stems"),
    "evaluate": (["evaluate", "--references", "refs", "--estimates", "est", "--json", "OUT/s.json", "-q"], "est"),
}
ENGINE_COMMANDS = ("denoise", "separate", "debleed", "mix")


def _argv(command: str, output: str = "out") -> List[str]:
    return [output if token == "OUT" else token.replace("OUT/", f"{output}/") for token in COMMANDS[command][0]]


def _replace(argv: List[str], flag: str, value: str) -> List[str]:
    return [value if i > 0 and argv[i - 1] == flag else token for i, token in enumerate(argv)]


Case = Tuple[Callable[[Path], List[str]], Sequence[str]]


def _cases() -> Dict[Tuple[str, str], Case]:
    """(command, bad input) -> (set up the workspace and return argv, needles of the error line)."""
    cases: Dict[Tuple[str, str], Case] = {}
    for command in ENGINE_COMMANDS:
        cases[command, "segment 0"] = (lambda s, c=command: _argv(c) + ["--segment", "0"], ["--segment"])
        cases[command, "segment -1"] = (lambda s, c=command: _argv(c) + ["--segment", "-1"], ["--segment"])
        cases[command, "overlap 1"] = (lambda s, c=command: _argv(c) + ["--overlap", "1"], ["--overlap", "1"])
        cases[command, "overlap -0.1"] = (lambda s, c=command: _argv(c) + ["--overlap", "-0.1"], ["--overlap"])
        cases[command, "shifts -1"] = ((lambda s, c=command: _argv(c) + ["--shifts", "-1"], ["--shifts"])
                                       if command in ("denoise", "separate") else None)
        cases[command, "unwritable output"] = (lambda s, c=command: _argv(c, str(UNWRITABLE)), [str(UNWRITABLE)])
        cases[command, "silent input"] = (lambda s, c=command: (_silent(s, COMMANDS[c][1]), _argv(c))[1], ["silent"])
        cases[command, "NaN input"] = (lambda s, c=command: (_nan(s, COMMANDS[c][1]), _argv(c))[1],
                                       ["NaN or infinite"])
        wrong = "separate.ckpt" if command != "separate" else "denoise.ckpt"
        cases[command, "wrong checkpoint"] = (lambda s, c=command, w=wrong: _replace(_argv(c), "--ckpt", w),
                                              [wrong, "not a"])
        cases[command, "missing checkpoint"] = (lambda s, c=command: _replace(_argv(c), "--ckpt", "nope.ckpt"),
                                                ["nope.ckpt"])
    for command in ("denoise", "separate", "debleed"):
        folder = COMMANDS[command][1]
        cases[command, "output is the input folder"] = (
            lambda s, c=command, f=folder: _replace(_argv(c), "-o", f)[:1] + [f] + _replace(_argv(c), "-o", f)[2:],
            [folder, "input folder"])
        cases[command, "missing input"] = (lambda s, c=command: ([c, "nowhere.wav", "other.wav"] + _argv(c)[2:]),
                                           ["nowhere.wav", "no such file"])
    cases["denoise", "spectrogram exists"] = (
        lambda s: ((s / "out").mkdir(), (s / "out" / "a.png").write_bytes(b"png"),
                   _argv("denoise", "out") + ["--spectrogram"])[2], ["a.png", "--overwrite"])
    cases["mix", "output is an input stem"] = (
        lambda s: _replace(_argv("mix"), "-o", "stems/vocals.wav") + ["--overwrite"], ["vocals.wav", "input"])
    cases["evaluate", "json exists"] = (
        lambda s: ((s / "out").mkdir(), (s / "out" / "s.json").write_text("{}"), _argv("evaluate"))[2],
        ["s.json", "--overwrite"])
    cases["evaluate", "json is an input"] = (
        lambda s: _replace(_argv("evaluate"), "--json", "est/vocals.wav") + ["--overwrite"], ["vocals.wav", "input"])
    cases["evaluate", "segment 0"] = (
        lambda s: ["evaluate", "--musdb", "refs", "--ckpt", "separate.ckpt", "--segment", "0"], ["--segment"])
    cases["evaluate", "overlap 1"] = (
        lambda s: ["evaluate", "--musdb", "refs", "--ckpt", "separate.ckpt", "--overlap", "1"], ["--overlap"])
    cases["evaluate", "wrong checkpoint"] = (
        lambda s: ["evaluate", "--musdb", "refs", "--ckpt", "denoise.ckpt"], ["denoise.ckpt", "not a separation"])
    cases["fxnorm", "unwritable output"] = (
        lambda s: ["fxnorm", "features", "stems", "-o", str(UNWRITABLE / "f.npz"), "-q"], [str(UNWRITABLE)])
    cases["fxnorm normalize", "unwritable output"] = (
        lambda s: ["fxnorm", "normalize", ".", "-o", str(UNWRITABLE), "--features", "builtin", "-q"],
        [str(UNWRITABLE)])
    cases["fit", "garbage --ckpt_path"] = (
        lambda s: ((s / "garbage.ckpt").write_bytes(b"this is not a checkpoint"),
                   ["fit", "-c", "recipe.yaml", "--ckpt_path", "garbage.ckpt"])[1], ["garbage.ckpt", "--ckpt_path"])
    return {key: case for key, case in cases.items() if case is not None}


CASES = _cases()


def _snapshot(folder: Path) -> Dict[str, Optional[bytes]]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


@pytest.mark.parametrize("command,problem", sorted(CASES), ids=[f"{c}-{p}" for c, p in sorted(CASES)])
def test_bad_input_gets_one_line_and_writes_nothing(command: str, problem: str, space: Path, capsys) -> None:
    build, needles = CASES[command, problem]
    if problem == "unwritable output":
        try:
            UNWRITABLE.mkdir()
        except OSError:
            pass
        else:  # pragma: no cover - a machine where /sys is writable
            UNWRITABLE.rmdir()
            pytest.skip("/sys is writable here")
    argv = build(space)
    before = _snapshot(space)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip() and not line.startswith("musicfx: warning:")]
    assert code == ERROR_STATUS, err
    assert len(lines) == 1 and lines[0].startswith("musicfx: error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert _snapshot(space) == before


def test_an_os_error_while_writing_is_one_line(space: Path, capsys, monkeypatch) -> None:
    # Whatever the system refuses mid-run (a full disk, permissions changed under us) names the file.
    import musicfx.inference as inference

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(space / "out" / "a.wav"))

    monkeypatch.setattr(inference, "process_files", refuse)
    code = main(_argv("denoise"))
    err = capsys.readouterr().err
    assert code == ERROR_STATUS and err.count("\n") == 1 and "Traceback" not in err
    assert "out/a.wav" in err and "Permission denied" in err
    assert not (space / "out").exists()


def test_a_silent_music_file_for_training_is_a_warning(tmp_path: Path) -> None:
    from musicfx.data.cache import DecodedCache

    sf.write(tmp_path / "silent.wav", np.zeros((SR, 1), np.float32), SR)
    with pytest.warns(UserWarning, match="silent.wav.*silent"):
        DecodedCache(tmp_path / "cache").load(tmp_path / "silent.wav", SR, 1)


def test_a_missing_target_in_evaluate_is_a_warning(space: Path, capsys) -> None:
    (space / "est" / "drums.wav").unlink()
    code = main(["evaluate", "--references", "refs", "--estimates", "est", "-q"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "musicfx: warning: no estimate for drums" in err
    assert os.path.exists(space / "refs" / "drums.wav")
