"""pytest plugin (`-p` in pyproject's addopts): the test session runs the platform in development.

Loaded before pytest-django imports the settings, which refuse to start with development values
unless DJANGO_DEBUG is on. Subprocesses inherit it through `child_env`; tests of production mode
build their own environment (tests/ops/conftest.py `production_env`).
"""

from __future__ import annotations

import os

os.environ["DJANGO_DEBUG"] = "1"
