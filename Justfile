# quorumq developer recipes

default:
    @just --list

# run the test suite (what CI runs after lint)
test *ARGS:
    uv run pytest {{ARGS}}

# lint and check formatting
lint:
    uv run ruff check .
    uv run ruff format --check .

# format the code
fmt:
    uv run ruff format .
    uv run ruff check --fix .

# benchmarks (see docs/benchmarks.md)
bench *ARGS:
    uv run quorumq bench log {{ARGS}}

# a chaos soak: kills, pauses and partitions (as root) under load, then the verdict
chaos *ARGS:
    uv run quorumq chaos {{ARGS}}

# the long chaos and comparison runs (opt-in, ~25 min)
soak:
    uv run pytest -m slow

# the demo
demo:
    uv run quorumq demo

# CI as it runs
ci:
    bash .ci/run
