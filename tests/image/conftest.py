"""The image tier: every role run from the project image by podman (the image fixture is shared:
tests/conftest.py, the cluster tier runs the same image)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "image: runs the project image with podman (scripts/image.sh)")
