# The two commands of the README. Each one sets up everything it needs first.
.PHONY: demo test console bootstrap

bootstrap:
	./scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/cleanroom demo

console: bootstrap
	.venv/bin/cleanroom console

test: bootstrap
	.venv/bin/python -m pytest -q --durations=15
