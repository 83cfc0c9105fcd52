# The two commands of the README. Each one sets up everything it needs first.
.PHONY: demo test console bootstrap lint

bootstrap:
	./scripts/bootstrap.sh

# Each run gets its own folder, so `make demo` can always be run again (a finished demo
# folder is refused rather than overwritten).
demo: bootstrap
	.venv/bin/cleanroom demo --workspace demo-runs/$$(date +%Y%m%d-%H%M%S)

console: bootstrap
	.venv/bin/cleanroom console

test: bootstrap lint
	.venv/bin/python -m pytest -q -n 4 --dist loadfile --no-loadscope-reorder --durations=15

# The gates CI holds the tree to: lint, format, types (strict for core/), import contracts.
# Every gate runs even when an earlier one fails, so one run lists all the findings.
LINT_GATES = "ruff check ." "ruff format --check ." "mypy" "lint-imports"
lint: bootstrap
	@status=0; for gate in $(LINT_GATES); do \
	    echo "lint: $$gate" >&2; .venv/bin/$$gate || status=1; \
	done; exit $$status
