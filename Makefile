# phasic_mpi — build, test and run. `make` (or `make help`) lists the targets.

PYTHON ?= python3
VENV = .venv
VPY = $(VENV)/bin/python
PIP = $(VPY) -m pip
# mpiexec of the mpich wheel (extra `mpi`); override for a site MPI:
#   make test-mpi MPIEXEC=mpiexec
MPIEXEC ?= $(VENV)/bin/mpiexec
NP ?= 2
# outputs of `make run` (SVGD, parallel tempering)
RUN_OUT ?= runs/rabbits.h5
RUN_OUT_PT ?= runs/rabbits_pt.h5
# extras for `make install`; on a cluster with a site MPI: EXTRAS=test (see README)
EXTRAS ?= test,mpi
# Hydra (MPICH's mpiexec) kills the job after this many seconds.
MPIEXEC_TIMEOUT ?= 300
export MPIEXEC_TIMEOUT

# One thread per MPI rank: no oversubscription by BLAS/OpenMP pools.
export OMP_NUM_THREADS = 1
export OPENBLAS_NUM_THREADS = 1
export MKL_NUM_THREADS = 1
export BLIS_NUM_THREADS = 1
export VECLIB_MAXIMUM_THREADS = 1
export NUMEXPR_NUM_THREADS = 1
export PYTHONUNBUFFERED = 1

LIB_SRC := $(sort $(wildcard libphase/src/*.c))
LIB_HDR := $(sort $(wildcard libphase/include/*.h libphase/src/*.h))
CTEST_SRC := $(sort $(wildcard libphase/tests/*.c))
EXT_STAMP := build/.ext-built

# Standalone C tests (no Python): sanitizers on, any UB is fatal.
CTEST_CC ?= gcc
CTEST_CFLAGS ?= -std=c11 -O2 -g -fno-omit-frame-pointer -Wall -Wextra -Werror \
	-fsanitize=address,undefined -fno-sanitize-recover=undefined
CTEST_DIR := build/ctest
CTEST_OBJ := $(patsubst libphase/src/%.c,$(CTEST_DIR)/obj/%.o,$(LIB_SRC))
CTEST_BIN := $(patsubst libphase/tests/%.c,$(CTEST_DIR)/bin/%,$(CTEST_SRC))

.DEFAULT_GOAL := help
.SECONDARY: $(CTEST_OBJ)
.PHONY: help install build test test-c test-py test-mpi run bench bench-core bench-svgd bench-pt bench-scaling bench-peers bench-pt-layouts bench-moments bench-report bench-terms bench-pt-reference bench-logz-calibration bench-calls clean distclean

help: ## list the targets
	@echo "usage: make <target> [NP=$(NP)] [PYTHON=$(PYTHON)] [MPIEXEC_TIMEOUT=$(MPIEXEC_TIMEOUT)]"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# --- environment -------------------------------------------------------------

$(VPY):
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }
	$(PIP) install --upgrade pip 'setuptools>=77' wheel 'cffi>=1.16' \
		|| { rm -rf $(VENV); exit 1; }

# Editable install with the dependencies; redone when the packaging changes.
# setuptools/wheel/cffi also go into the venv (not only the isolated build
# env) because the extension is rebuilt below with `setup.py build_ext`.
$(VENV)/.installed: pyproject.toml setup.py | $(VPY)
	$(PIP) install 'setuptools>=77' wheel 'cffi>=1.16'
	$(PIP) install -e '.[$(EXTRAS)]'
	touch $@

# The cffi extension phasic_mpi/_libphase*.so, rebuilt in place when the C
# sources, the header or the builder change (the editable install imports it
# from the source tree).
$(EXT_STAMP): $(VENV)/.installed libphase/build_cffi.py $(LIB_SRC) $(LIB_HDR) \
		libphase/build_exitguard.py $(wildcard libphase/exitguard/*)
	$(VPY) setup.py -q build_ext --inplace
	@mkdir -p $(@D) && touch $@

install: $(EXT_STAMP) ## create .venv, pip install -e '.[test,mpi]', build the cffi extension

build: $(VENV)/.installed ## rebuild the cffi extension phasic_mpi/_libphase*.so in place (after C changes)
	$(VPY) setup.py build_ext --inplace
	@mkdir -p $(dir $(EXT_STAMP)) && touch $(EXT_STAMP)

# --- tests -------------------------------------------------------------------

test: install ## everything: test-c, test-py, test-mpi at NP=1, 2, 3
	$(MAKE) --no-print-directory test-c
	$(MAKE) --no-print-directory test-py
	$(MAKE) --no-print-directory test-mpi NP=1
	$(MAKE) --no-print-directory test-mpi NP=2
	$(MAKE) --no-print-directory test-mpi NP=3

test-c: $(CTEST_BIN) ## C tests libphase/tests/*.c with ASan+UBSan (no Python)
ifeq ($(strip $(CTEST_SRC)),)
	@echo "test-c: no C tests in libphase/tests/ (nothing to run)"
else
	@failed=""; for t in $(CTEST_BIN); do \
		echo "== $$t"; \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		./$$t || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "test-c: FAILED:$$failed"; exit 1; fi; \
	echo "test-c: all $(words $(CTEST_BIN)) passed"
endif

$(CTEST_DIR)/obj/%.o: libphase/src/%.c $(LIB_HDR)
	@mkdir -p $(@D)
	$(CTEST_CC) $(CTEST_CFLAGS) -Ilibphase/include -Ilibphase/src -c $< -o $@

$(CTEST_DIR)/bin/%: libphase/tests/%.c $(CTEST_OBJ) $(LIB_HDR) $(wildcard libphase/tests/*.h)
	@mkdir -p $(@D)
	$(CTEST_CC) $(CTEST_CFLAGS) -Ilibphase/include -Ilibphase/src -Ilibphase/tests \
		$< $(CTEST_OBJ) -lm -o $@

test-py: install ## serial pytest (tests marked mpi are skipped)
	$(VPY) -m pytest -q tests

test-mpi: install ## pytest --with-mpi -m mpi under mpiexec -n NP (default 2)
	$(MPIEXEC) -n $(NP) $(VPY) -m mpi4py -m pytest -q -p no:cacheprovider --with-mpi -m mpi tests

# --- run ---------------------------------------------------------------------

run: install ## SVGD and PT on simulated rabbits data (examples/rabbits*.toml) on NP ranks, then summaries and figures
	$(MPIEXEC) -n $(NP) $(VENV)/bin/phasic-mpi run examples/rabbits.toml --out $(RUN_OUT) --force
	$(VENV)/bin/phasic-mpi summary $(RUN_OUT)
	$(MPIEXEC) -n $(NP) $(VENV)/bin/phasic-mpi run examples/rabbits_pt.toml --out $(RUN_OUT_PT) --force
	$(VENV)/bin/phasic-mpi summary $(RUN_OUT) $(RUN_OUT_PT)
	$(VENV)/bin/phasic-mpi plot $(RUN_OUT) $(RUN_OUT_PT) --out $(basename $(RUN_OUT))_plots

bench: bench-core bench-svgd bench-pt bench-scaling ## all four benchmarks (results in benchmarks/results/)

bench-core: install ## benchmarks/bench_core.py
	$(VPY) benchmarks/bench_core.py

bench-calls: install ## Python overhead per public likelihood call (1 θ, small models): baseline -> this tree
	$(VPY) benchmarks/bench_calls.py

bench-svgd: install ## SVGD kernel ns/pair old (numpy) vs C; time per iteration old vs new step, 1 and 2 ranks
	$(VPY) benchmarks/bench_svgd.py

bench-pt: install ## PT time per scan (local/swaps/output) and bytes per swap, 1 and 2 ranks
	$(VPY) benchmarks/bench_pt.py

bench-moments: install ## expected SFS + gradient of block-counting n=20,30,40: libphase vs scipy splu
	$(VPY) benchmarks/bench_moments.py

bench-pt-reference: install ## PT prior vs variational reference: Lambda, round trips/scan, bulk-ESS/s (rabbits, hypoexp)
	$(VPY) benchmarks/bench_pt_reference.py

bench-report: install ## wall/CPU s of `phasic-mpi summary` and `plot` on the BNN example's run file (median of 5)
	$(VPY) benchmarks/bench_report.py

bench-terms: install ## SFS / moment likelihood terms per evaluation (64 rows): old row loop vs vectorised
	$(VPY) benchmarks/bench_terms.py

bench-logz-calibration: install ## PT log Z estimates (forward, reverse, bridge): z-scores against the exact value over 60 seeds
	$(VPY) benchmarks/bench_logz_calibration.py --seeds 60

bench-scaling: install ## alpha-beta fit at 2 ranks, MPICH collective model, projected efficiency to 512 ranks
	$(VPY) benchmarks/bench_scaling.py

# emcee and ptemcee are needed by bench-peers only (extra `bench`).
# The bench extra's packages only: `pip install -e '.[bench]'` would reinstall
# phasic_mpi itself and rebuild the extension for nothing.
$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(VPY) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['bench'], sep='\n')" > $(VENV)/bench-requirements.txt
	$(PIP) install -r $(VENV)/bench-requirements.txt
	touch $@

bench-peers: install $(VENV)/.bench-installed ## PT/SVGD vs emcee/ptemcee: bulk-ESS/s, accuracy, mode switching (~15 min)
	$(VPY) benchmarks/bench_peers.py

bench-pt-layouts: install $(VENV)/.bench-installed ## PT metric vs unit metric (40 seeds), chains x replicas grid on bench-peers' targets (~15 min)
	$(VPY) benchmarks/bench_pt_layouts.py

# --- cleaning ----------------------------------------------------------------

clean: ## remove build/, the compiled extension, *.egg-info, __pycache__
	rm -rf build dist *.egg-info phasic_mpi/*.so .pytest_cache
	find . -path ./$(VENV) -prune -o -path ./.git -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean ## clean and remove .venv
	rm -rf $(VENV)

# --- Slurm integration test (root; installs Debian's slurm + munge) ------------
.PHONY: test-slurm
test-slurm: install ## throw-away one-node Slurm (root): jobs/{svgd,pt,array}.sbatch vs mpiexec, time limit -> requeue -> resume
	bash tests/slurm/run.sh
