# spendgate: `make demo` runs the main job, `make test` the whole suite, `make check` lint and types.
# Every target installs what it needs into .venv first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check bench clean system

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/spendgate demo --serve

# Debian packages some tests drive: Chromium (the dashboard, through Playwright), poppler's
# pdftoppm (report pages to PNG) and Prometheus's promtool (the /metrics lint). Installed once,
# never downloaded by the tests themselves. Only promtool is wanted of `prometheus`: where
# systemd starts the server it ships (on port 9090), it is stopped and disabled again.
SYSTEM_COMMANDS := chromium:chromium pdftoppm:poppler-utils promtool:prometheus

system:
	@missing=""; for pair in $(SYSTEM_COMMANDS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "the tests need Debian packages:$$missing (apt-get install$$missing)"; exit 1; fi; \
	  echo "installing$$missing"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends$$missing >/dev/null; \
	  case "$$missing " in *" prometheus "*) \
	    $$SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true;; esac; \
	fi

test: $(STAMP) system
	$(BIN)/python -m pytest -n 2 -q

check: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
