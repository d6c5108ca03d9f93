"""benchmarks/rhythm_alarms.py: the reference stretches it scores rhythm alarms against, read
from real MIT-BIH annotations, and a short replay of a ventricular-tachycardia stretch."""

from __future__ import annotations

from _data import shared_data_dir

from benchmarks.rhythm_alarms import _merge, _overlaps, reference, replay


def test_reference_stretches_come_from_the_expert_annotation() -> None:
    ref, length = reference(shared_data_dir("mitdb", "201"))
    assert 1800 < length < 1810
    assert ref["irregular_rhythm"]  # 201 has atrial fibrillation episodes
    assert all(0 <= a < b <= length for a, b in ref["irregular_rhythm"])
    ref205, _ = reference(shared_data_dir("mitdb", "205"))
    # Runs of 8 and 9 V beats end at about 301 s and 306 s (annotation times).
    vt = _merge(ref205["ventricular_tachycardia"])
    assert _overlaps(vt, 299.0, 302.0)
    assert _overlaps(vt, 304.0, 307.0)
    assert not _overlaps(vt, 0.0, 250.0)
    assert "asystole" not in ref205


def test_merge_and_overlap() -> None:
    assert _merge([(5.0, 8.0), (1.0, 3.0), (2.0, 4.0)]) == [(1.0, 4.0), (5.0, 8.0)]
    assert _overlaps([(1.0, 4.0)], 3.9, 10.0)
    assert not _overlaps([(1.0, 4.0)], 4.0, 10.0)


def test_a_short_clean_replay_raises_no_rhythm_alert() -> None:
    assert replay(shared_data_dir("mitdb", "122"), 60.0, with_model=True) == []
