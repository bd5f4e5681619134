# Two commands: `make demo` (set up and run the streaming demo) and `make test` (set up and run the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= $(or $(ECGWATCH_DATA_DIR),../shared/data)
OUT ?= runs/train

.PHONY: venv system-deps demo train test lint clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

venv: $(BIN)/activate
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'

# Real tools the tests drive: Mosquitto (broker), promtool + prometheus (alert rules, scrape test), Redis (shared
# device state), openssl (test certificates), systemd-analyze.
system-deps:
	@missing=""; \
	command -v promtool >/dev/null && command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: venv
	ECGWATCH_DATA_DIR=$(DATA) $(BIN)/ecgwatch demo

train: venv
	$(BIN)/ecgwatch-train ecg --data $(DATA) --out $(OUT)/model
	$(BIN)/ecgwatch-train evaluate --model $(OUT)/model --data $(DATA) --out $(OUT)/report

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: venv system-deps lint
	ECGWATCH_DATA_DIR=$(DATA) $(BIN)/pytest

clean:
	rm -rf $(VENV) runs
