"""The code stays clean: ruff (lint and format) and mypy --strict pass on the whole repo, as `python build.py lint`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.timeout(300)  # mypy without its cache (a fresh clone) takes about a minute
@pytest.mark.parametrize(
    "command",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_the_repo_is_clean(command: list[str]) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "TrackingBackend"), str(REPO_ROOT)]))
    done = subprocess.run(
        [sys.executable, "-m", *command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(command)} found problems:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"
