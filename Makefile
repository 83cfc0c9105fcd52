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

# The lint gates run beside the suite (the suite waits on services and leaves CPU idle; the gates
# take about a minute cold) and print after it; the command fails if either fails.
test: bootstrap
	@lint_log=$$(mktemp); $(MAKE) --no-print-directory lint > "$$lint_log" 2>&1 & lint_pid=$$!; \
	.venv/bin/python -m pytest -q -n 4 --dist loadfile --no-loadscope-reorder --durations=15; tests=$$?; \
	wait $$lint_pid; lint=$$?; cat "$$lint_log"; rm -f "$$lint_log"; \
	if [ $$lint -ne 0 ]; then echo "make test: the lint gates failed (above)" >&2; fi; \
	if [ $$tests -ne 0 ]; then exit $$tests; fi; exit $$lint

# The gates CI holds the tree to: lint, format, types (strict for core/), import contracts.
# Every gate runs even when an earlier one fails, so one run lists all the findings.
LINT_GATES = "ruff check ." "ruff format --check ." "mypy" "lint-imports"
lint: bootstrap
	@status=0; for gate in $(LINT_GATES); do \
	    echo "lint: $$gate" >&2; .venv/bin/$$gate || status=1; \
	done; exit $$status
