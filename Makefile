# The two commands of braincode: `make demo` and `make test`.
# Each creates (or reuses) the virtual environment in .venv, installs what it needs, then runs.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
# torch is pinned here (not in pyproject) because this exact build runs on CPU and GPU machines alike and is
# available offline on our CI image; pyproject keeps ranges for real users.
TORCH_PIN = torch==2.14.1 torchvision==0.29.1
STAMP   = $(VENV)/.braincode-installed
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/braincode demo --out demo_out

test: $(STAMP)
	$(VENV)/bin/ruff check braincode tests bench notebooks
	$(PY) -m pytest tests braincode

clean:
	rm -rf demo_out .pytest_cache
