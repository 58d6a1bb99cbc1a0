# switchyard: every target installs what it needs first.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
export PACT_DO_NOT_TRACK := true

.PHONY: help install up down status logs test test-unit test-integration lint format lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install the locked dependencies
$(STAMP): requirements.lock pyproject.toml
	@bash scripts/install-python.sh "$(VENV)"
	@rm -f $(VENV)/.installed-* && touch $@

up: install ## Start the stack (detached, healthy before it returns) and print the URLs (CLUSTER=3: three nodes per broker)
	@$(BIN)/switchyard stack up $(if $(CLUSTER),--nodes $(CLUSTER))

down: install ## Stop everything `make up` started
	@$(BIN)/switchyard stack down

status: install ## One table of server health, read from the real servers
	@$(BIN)/switchyard stack status

logs: install ## Show logs (SERVICE=users|orders|payments|postgres|rabbitmq|kafka, rabbitmq-2 in a cluster, FOLLOW=1)
	@$(BIN)/switchyard stack logs $(SERVICE) $(if $(FOLLOW),--follow)

test: install ## Run the whole suite (starts its own servers unless URLs are in the environment)
	@$(BIN)/pytest -m "not ledger and not fuzz" $(PYTEST_ARGS)
	@# The OpenAPI fuzz run gets servers of its own: after it, the shared RabbitMQ 3.10 node was
	@# seen to stop answering the tests that came later (an open issue, see the README).
	@$(BIN)/pytest -m fuzz $(PYTEST_ARGS)

.PHONY: chaos
chaos: install ## The chaos ledger: orders counted through every blow, single node and cluster
	@$(BIN)/pytest -m ledger $(PYTEST_ARGS)

test-unit: install ## Unit tests only: no servers
	@$(BIN)/pytest -m unit $(PYTEST_ARGS)

test-integration: install ## The cross-service suite alone: the services as real processes
	@$(BIN)/pytest -m e2e $(PYTEST_ARGS)

lint: install ## ruff: lint and format check
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

format: install ## ruff: fix what can be fixed and format
	@$(BIN)/ruff check --fix .
	@$(BIN)/ruff format .

lock: ## Re-lock requirements.lock from pyproject.toml
	@command -v uv >/dev/null || { echo "uv is needed to lock: pipx install uv (or pip install uv)"; exit 1; }
	uv pip compile pyproject.toml --extra test --python-version 3.11 -o requirements.lock

clean: down ## Stop the stack and remove .venv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache

.PHONY: demo
demo: up ## Walk one order through the running stack, step by step
	@$(BIN)/switchyard demo

.PHONY: bench bench-compare bench-messaging
bench: install ## Orders through the whole stack: orders/s, latency, CPU per order, raw rates
	@$(BIN)/python -m bench.pipeline $(BENCH_ARGS)

BASE ?= HEAD
PAIRS ?= 3
bench-compare: install ## make bench of BASE (a git revision) and of this tree, turn about
	@$(BIN)/python -m bench.compare $(BASE) --pairs $(PAIRS) --bench-args="$(BENCH_ARGS)"

bench-messaging: install ## Raw broker and database rates, and the outbox relay against them
	@$(BIN)/python -m bench.messaging

.PHONY: webhook
webhook: install ## Send a signed PSP webhook: TYPE=payment.succeeded ORDER=<id> [AMOUNT=cents CURRENCY=EUR]
	@$(if $(TYPE),,$(error TYPE is required: payment.succeeded, payment.failed or payment.refunded))
	@$(if $(ORDER),,$(error ORDER is required: the id of the order the payment is for))
	@$(BIN)/switchyard webhook send --type "$(TYPE)" --order "$(ORDER)" \
		$(if $(AMOUNT),--amount "$(AMOUNT)") $(if $(CURRENCY),--currency "$(CURRENCY)")

.PHONY: contracts pacts
contracts: install ## Consumer tests must write the committed pacts; every provider must keep them
	@$(BIN)/python contracts/check.py

pacts: install ## Rewrite contracts/pacts from the consumer tests (then run make contracts, commit)
	@$(BIN)/python contracts/check.py --update

.PHONY: docs
docs: install ## Write the AsyncAPI documents and the README's message-flow table from wiring() (CHECK=1: only check)
	@$(BIN)/python -m switchyard.docs $(if $(CHECK),--check)
