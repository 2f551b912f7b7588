# The two commands that set up a fresh machine (see README.md):
#   make demo   install, index the sample corpus with the default model, and search it
#   make test   install and run the test suite
.PHONY: setup demo test

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/arr index examples/debian-sample --overwrite
	.venv/bin/arr search "HCL configuration parser for python" -k 5

test: setup
	.venv/bin/python -m pytest -q
