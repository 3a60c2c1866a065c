# The two newcomer commands: `make demo` and `make test`. Both set up what they need.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DEVCLOUD := devcloud/devcloud
export OS_CLIENT_CONFIG_FILE ?= $(CURDIR)/.devcloud/clouds.yaml

.PHONY: setup test lint unit demo clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/.installed

lint: setup
	$(BIN)/ruff check tenantshift tests
	$(BIN)/mypy

# Everything, including the tests against the local OpenStack (started if not running).
test: lint
	$(BIN)/pytest

# Only the fast tests that need no cloud.
unit: setup
	$(BIN)/pytest -m "not devcloud"

# A real migration on the built-in default: the local OpenStack, src-tenant -> dst-tenant.
# The manifest is examples/devcloud.yaml plus the conversion hosts `devcloud up` describes
# (their host keys and device directories are made on this machine).
DEMO := .devcloud/demo.yaml
demo: setup
	$(DEVCLOUD) up
	$(DEVCLOUD) seed
	{ cat examples/devcloud.yaml; echo "conversion_hosts:"; \
	  sed -e '/^#/d' -e 's/^/  /' .devcloud/conversion-hosts.yaml; } > $(DEMO)
	$(BIN)/tenantshift plan -m $(DEMO) -o .devcloud/demo.plan
	$(BIN)/tenantshift apply -m $(DEMO) .devcloud/demo.plan
	$(BIN)/tenantshift report -m $(DEMO) --run latest -o .devcloud/demo-report.html
	@echo "== a second plan: nothing left to do =="
	$(BIN)/tenantshift plan -m $(DEMO) --detailed-exitcode

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
