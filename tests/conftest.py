"""Shared fixtures: one real Kafka broker per test session, unique topics and groups per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from ppg_mi.config import Settings
from ppg_mi.local.kafka import LocalBroker, free_port
from ppg_mi.streaming.topics import ensure_topics

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real broker for the whole session: PPG_MI_TEST_BOOTSTRAP_SERVERS, or one started here."""
    external = os.environ.get("PPG_MI_TEST_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    settings = Settings.from_env({}, kafka_local_heap="384m", kafka_local_port=free_port())
    broker = LocalBroker(settings, tmp_path_factory.mktemp("kafka"), "127.0.0.1", settings.kafka_local_port)
    broker.start()
    yield broker.bootstrap
    broker.destroy()


@pytest.fixture
def broker_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings naming the session broker, with topics and groups no other test uses."""
    tag = uuid.uuid4().hex[:10]
    settings = Settings.from_env(
        {},
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_raw=f"raw-{tag}",
        topic_filtered=f"filtered-{tag}",
        topic_predictions=f"predictions-{tag}",
        topic_dlq=f"dlq-{tag}",
        topic_partitions=3,
        group_filter=f"filter-{tag}",
        group_classifier=f"classifier-{tag}",
        group_dashboard=f"dashboard-{tag}",
        instance_id=f"test-{tag}",
        models_dir=str(tmp_path / "models"),
        metrics_port=0,
        cache_dir=Settings.from_env({}).cache_dir,
        log_format="json",
        batch_max_wait_ms=100,
        model_reload_interval_s=0.5,
    )
    ensure_topics(settings)
    return settings


@pytest.fixture(scope="session")
def trained_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store holding one small real aeon checkpoint as `current` (default settings' preprocessing).

    Tests that copy it may add versions; the session's copy itself is never modified.
    """
    from training.train import TrainConfig, train

    from ppg_mi.config import parse_target_sensitivity
    from ppg_mi.data import SyntheticConfig, generate
    from ppg_mi.signal import BandPass

    settings = Settings.from_env({})
    root = tmp_path_factory.mktemp("models")
    dataset = generate(SyntheticConfig(records=80, samples=settings.samples_per_record,
                                       sampling_rate_hz=settings.sampling_rate_hz, seed=7, id_prefix="train"))
    # the product's defaults: the default kind with its operating point (PPG_MI_TARGET_SENSITIVITY), so the
    # stages serve a model that decides by its threshold. Calibrated on 3 folds, not 5 (4 fits, not 6): 5 folds
    # took 1.1 s against 0.3-0.5 s for the previous default kind without an operating point
    target = parse_target_sensitivity(settings.target_sensitivity)
    train(dataset, BandPass.from_settings(settings),
          TrainConfig(kind=settings.model_kind, folds=0, seed=0, target_sensitivity=target, calibration_folds=3), root)
    return root


@pytest.fixture
def served_settings(broker_settings: Settings, trained_models_dir: Path) -> Settings:
    """``broker_settings`` whose model store holds this test's own copy of the session's model."""
    shutil.copytree(trained_models_dir, broker_settings.models_dir)
    return broker_settings


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
