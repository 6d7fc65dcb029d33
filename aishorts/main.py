"""`aishorts-runner`: the command line of `runner.cli`, with the front ends the supervisor must not import.

Responsible for handing `runner.cli.main` its extensions: the `serve` command (`serve/`, the `serve`
extra), `--cluster` (`cluster.driver`, the `cluster` extra) and `--isolation none` (`aishorts.inprocess`,
which imports stage code). Each is imported only when it is asked for, so `--help` and a plain run stay
as light as the supervisor. Not here: parsing, checking or running anything (`runner/`).
"""

from __future__ import annotations

import importlib
import sys

from aishorts.runner.cli import main as runner_main
from aishorts.runner.session import Extensions

SERVE_NEEDS = ("fastapi", "uvicorn", "starlette", "anyio", "pydantic")


def main(argv: list[str] | None = None) -> int:
    return runner_main(argv, extensions())


def extensions() -> Extensions:
    return Extensions(executors={"none": execute_in_process}, run_on_cluster=run_on_cluster,
                      commands={"serve": serve_main})


def serve_main(argv: list[str]) -> int:
    """`aishorts-runner serve`: the web page and API, from the `serve` extra (loaded only here)."""
    try:
        serve_cli = importlib.import_module("aishorts.serve.cli")
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVE_NEEDS:
            raise
        print(f"aishorts-runner serve: needs the serve extra ({exc.name} is not installed):"
              ' pip install -e ".[serve]"', file=sys.stderr)
        return 2
    return serve_cli.main(argv)


def run_on_cluster(*args, **kwargs) -> int:
    """`--cluster`: `cluster.driver` imports Ray, so only ever under --cluster."""
    return importlib.import_module("aishorts.cluster.driver").run_on_cluster(*args, **kwargs)


def execute_in_process(*args, **kwargs):
    """`--isolation none`: the single-process baseline imports stage code, so only when asked for."""
    return importlib.import_module("aishorts.inprocess").execute_in_process(*args, **kwargs)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
