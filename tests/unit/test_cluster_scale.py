"""Pure parts of `ppg-mi cluster scale`: the plan (refusals, KEDA pause, HPA notes) and the progress line."""

from __future__ import annotations

import pytest

from ppg_mi.cluster.errors import REFUSED, ClusterCommandError
from ppg_mi.cluster.scale import Partitions, plan, progress_line
from ppg_mi.cluster.status import Autoscaler

SIX = Partitions("ppg.filtered", 6, "broker 127.0.0.1:9092")
KEDA = Autoscaler("ScaledObject", "so", "dep", 1, 6)
HPA = Autoscaler("HorizontalPodAutoscaler", "hpa", "dep", 1, 4)


def test_refuses_more_replicas_than_partitions_with_the_reason() -> None:
    with pytest.raises(ClusterCommandError) as refused:
        plan("classifier", "dep", 7, False, SIX, KEDA)
    assert refused.value.exit_code == REFUSED
    assert str(refused.value) == ("refusing 7 classifier replicas: ppg.filtered has 6 partitions "
                                  "(broker 127.0.0.1:9092), and consumers beyond the partition count sit idle")
    assert plan("classifier", "dep", 6, False, SIX, KEDA).replicas == 6


def test_keda_pauses_and_patches_the_scale_too() -> None:
    p = plan("classifier", "dep", 3, False, SIX, KEDA)
    assert (p.pause, p.resume, p.patch_scale, p.replicas) == ("so", None, True, 3)
    assert "autoscaling.keda.sh/paused-replicas=3 on ScaledObject so" in p.notes[0]


def test_resume_removes_the_pause_and_needs_keda() -> None:
    p = plan("filter", "dep", None, True, None, KEDA)
    assert (p.pause, p.resume, p.patch_scale) == (None, "so", False)
    with pytest.raises(ClusterCommandError, match="no KEDA ScaledObject"):
        plan("filter", "dep", None, True, None, HPA)
    with pytest.raises(ClusterCommandError, match="needs a replica count"):
        plan("filter", "dep", None, False, None, KEDA)


def test_hpa_range_is_respected_and_its_ownership_said() -> None:
    p = plan("classifier", "dep", 3, False, SIX, HPA)
    assert p.patch_scale and p.pause is None and "HorizontalPodAutoscaler hpa owns dep" in p.notes[0]
    with pytest.raises(ClusterCommandError, match=r"keeps dep within 1..4") as refused:
        plan("classifier", "dep", 5, False, SIX, HPA)
    assert refused.value.exit_code == REFUSED


def test_no_autoscaler_patches_the_scale_and_negative_is_refused() -> None:
    p = plan("filter", "dep", 0, False, SIX, None)
    assert p.patch_scale and p.pause is None and not p.notes
    with pytest.raises(ClusterCommandError, match="0 or more"):
        plan("filter", "dep", -1, False, SIX, None)


def test_progress_line() -> None:
    assert progress_line("classifier", 3, 1, 2, 12.4) == "classifier: 1/3 ready, 2 pods (12 s)"
    assert progress_line("filter", 1, 1, 1, 0) == "filter: 1/1 ready, 1 pod (0 s)"
