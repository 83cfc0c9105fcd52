# The two commands of the README. Each one sets up everything it needs first.
.PHONY: demo test console bootstrap

bootstrap:
	./scripts/bootstrap.sh

# Each run gets its own folder, so `make demo` can always be run again (a finished demo
# folder is refused rather than overwritten).
demo: bootstrap
	.venv/bin/cleanroom demo --workspace demo-runs/$$(date +%Y%m%d-%H%M%S)

console: bootstrap
	.venv/bin/cleanroom console

test: bootstrap
	.venv/bin/python -m pytest -q --durations=15
