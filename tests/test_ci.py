"""CI is honest: in CI (CI=true) tests that did not run fail the run; elsewhere they skip and say why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PG_TEST = "tests/test_storage_postgres.py::test_duplicates_are_recorded_once[postgresql]"
HAS_PG_SERVER = any(Path("/usr/lib/postgresql").glob("*/bin/postgres"))


def run(args: list[str], *, ci: bool, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "PG_TEST_URL", "PYTEST_ADDOPTS")}
    clean.update(env, PYTHONPATH=str(ROOT))
    if ci:
        clean["CI"] = "true"
    return subprocess.run(args, cwd=ROOT, env=clean, capture_output=True, text=True, timeout=300)


def pytest_args(*more: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *more]


@pytest.mark.parametrize("ci", [pytest.param(True, id="ci"), pytest.param(False, id="local")])
def test_a_postgresql_test_without_a_server_fails_in_ci_and_skips_visibly_elsewhere(ci: bool) -> None:
    result = run(pytest_args(PG_TEST), ci=ci)
    if ci:
        assert result.returncode == 1, result.stdout
        assert "1 error" in result.stdout and "PostgreSQL not available" in result.stdout
    else:
        assert result.returncode == 0, result.stdout
        assert "1 skipped" in result.stdout and "PostgreSQL not available" in result.stdout  # the reason shows


def test_with_postgres_refuses_to_run_without_a_server_in_ci(tmp_path: Path) -> None:
    script = str(ROOT / "scripts" / "with-postgres.sh")
    result = run([script, "true"], ci=True, PG_BIN=str(tmp_path))  # a directory with no server in it
    assert result.returncode == 1 and "no PostgreSQL server binaries" in result.stderr
    result = run([script, "true"], ci=False, PG_BIN=str(tmp_path))
    assert result.returncode == 0 and "the PostgreSQL tests are skipped" in result.stderr


@pytest.mark.skipif(not HAS_PG_SERVER, reason=".ci/run would install PostgreSQL first (needs root and a network)")
@pytest.mark.parametrize("ci", [pytest.param(True, id="ci"), pytest.param(False, id="local")])
def test_ci_run_fails_when_no_test_was_collected(ci: bool) -> None:
    result = run([str(ROOT / ".ci" / "run"), *pytest_args("-k", "no_test_is_named_like_this", "tests/test_ci.py")],
                 ci=ci)
    assert "no tests were collected" in result.stdout
    assert result.returncode == (5 if ci else 0)
