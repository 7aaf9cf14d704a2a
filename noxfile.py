"""nox sessions: tests, lint, typecheck, benchmarks (`nox -s tests`)."""

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "vecaf_bench", "plugins", "tests", "benchmarks", "examples")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def benchmarks(session: nox.Session) -> None:
    session.install("-e", ".")
    session.run("python", "benchmarks/feature_throughput.py", *session.posargs)
