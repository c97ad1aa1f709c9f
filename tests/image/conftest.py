"""The image tier: the project image, built by scripts/image.sh from the working tree, run by podman."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..chart.chartlib import REPO


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "image: runs the project image with podman (scripts/image.sh)")


@dataclass(frozen=True)
class ProjectImage:
    name: str
    podman: list[str]
    uid: int


@pytest.fixture(scope="session")
def project_image() -> ProjectImage:
    """The image of the working tree: a rebuild reuses every layer of an unchanged tree (seconds)."""
    image = os.environ.get("PPG_MI_IMAGE", "localhost/ppg-mi:dev")
    result = subprocess.run(["bash", str(REPO / "scripts" / "image.sh"), "build"], capture_output=True,
                            text=True, timeout=1800, env={**os.environ, "PPG_MI_IMAGE": image})
    if result.returncode != 0:
        pytest.fail(f"scripts/image.sh build failed ({result.returncode}):\n{result.stderr[-4000:]}")
    cache = Path(os.environ.get("PPG_MI_CACHE_DIR") or Path.home() / ".cache" / "ppg-mi")
    podman = ["env", f"CONTAINERS_CONF={cache / 'containers' / 'containers.conf'}", "podman"]
    user = subprocess.run([*podman, "image", "inspect", "--format", "{{.Config.User}}", image],
                          capture_output=True, text=True, check=True).stdout.strip()
    yield ProjectImage(image, podman, int(user.split(":")[0]))
    # containers of an interrupted test: `podman run --rm` leaves none behind otherwise
    names = subprocess.run([*podman, "ps", "-a", "--format", "{{.Names}}", "--filter", "name=ppg-mi-test-"],
                           capture_output=True, text=True).stdout.split()
    if names:
        subprocess.run([*podman, "rm", "--force", "--time", "0", *names], capture_output=True)
