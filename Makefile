# The two commands of the README: `make quickstart` (install, train, denoise the demo) and `make test`.
PYTHON ?= python
RUN ?= runs/quickstart
OUT ?= outputs/quickstart

.PHONY: install quickstart test test-slow test-gpu bench bench-peers demo-asset

install:
	$(PYTHON) -m pip install -e ".[dev]"

quickstart: install
	$(PYTHON) -m musicfx.cli fit -c recipes/quickstart.yaml --trainer.default_root_dir $(RUN)
	$(PYTHON) -m musicfx.cli denoise musicfx/assets/demo_noisy.flac -o $(OUT)/demo_denoised.wav \
		--ckpt $(RUN)/checkpoints/last.ckpt --spectrogram --overwrite
	@echo "Wrote $(OUT)/demo_denoised.wav and $(OUT)/demo_denoised.png"
	$(PYTHON) tools/demo_improvement.py $(OUT)/demo_denoised.wav

test: install
	$(PYTHON) -m pytest -q

test-slow: install
	$(PYTHON) -m pytest -q -m slow || [ $$? -eq 5 ]  # exit 5: no test is marked slow yet

test-gpu: install
	$(PYTHON) -m pytest -q -m gpu

# One process, at most 8 minutes on one GPU: gpu tests, every recipe, precisions, inference, metrics
# (docs/benchmarks.md). Tables to stdout, numbers to outputs/gpu_check/; exit 1 on any failure or NaN.
# No install step: it runs from the checkout, also on a GPU machine without a network.
.PHONY: gpu-check
gpu-check:
	$(PYTHON) benchmarks/gpu_check.py

bench:
	$(PYTHON) benchmarks/bench_museval_sdr.py
	$(PYTHON) benchmarks/bench_noise_synth.py
	$(PYTHON) benchmarks/bench_denoise_speed.py
	$(PYTHON) benchmarks/bench_automix.py --parts console,normalize
	$(PYTHON) benchmarks/bench_debleed.py --parts synthesis kamir

# The peer libraries (Open-Unmix, Demucs, bs-roformer) live in their own venv, never in the package's environment.
bench-peers:
	bash benchmarks/peers.sh
	.venv-peers/bin/python benchmarks/bench_separation_data.py --threads 1
	.venv-peers/bin/python benchmarks/bench_parity.py --threads 1

demo-asset:
	$(PYTHON) tools/make_demo_asset.py
