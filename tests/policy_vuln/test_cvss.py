"""CVSS base scores: v2/v3.0/v3.1 computed here agree with the `cvss` library everywhere."""

from __future__ import annotations

import pytest
from cvss import CVSS2, CVSS3  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.vuln.cvss import CvssError, score


def _vector(prefix: str, metrics: dict[str, str]) -> str:
    return prefix + "/".join(f"{k}:{v}" for k, v in metrics.items())


_v3 = st.fixed_dictionaries(
    {
        "AV": st.sampled_from("NALP"),
        "AC": st.sampled_from("LH"),
        "PR": st.sampled_from("NLH"),
        "UI": st.sampled_from("NR"),
        "S": st.sampled_from("UC"),
        "C": st.sampled_from("HLN"),
        "I": st.sampled_from("HLN"),
        "A": st.sampled_from("HLN"),
    }
)
_v2 = st.fixed_dictionaries(
    {
        "AV": st.sampled_from("LAN"),
        "AC": st.sampled_from("HML"),
        "Au": st.sampled_from("MSN"),
        "C": st.sampled_from("NPC"),
        "I": st.sampled_from("NPC"),
        "A": st.sampled_from("NPC"),
    }
)


@settings(max_examples=400, deadline=None)
@given(_v3, st.sampled_from(["CVSS:3.0/", "CVSS:3.1/"]))
def test_v3_scores_match_reference_library(metrics: dict[str, str], prefix: str) -> None:
    vector = _vector(prefix, metrics)
    assert score(vector).score == float(CVSS3(vector).base_score), vector


@settings(max_examples=300, deadline=None)
@given(_v2)
def test_v2_scores_match_reference_library(metrics: dict[str, str]) -> None:
    vector = _vector("", metrics)
    assert score(vector).score == float(CVSS2(vector).base_score), vector


@pytest.mark.parametrize(
    ("vector", "value", "rating"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0, "critical"),  # Log4Shell
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N", 7.5, "high"),  # Heartbleed (NVD 3.x)
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O", 7.8, "high"),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0, "low"),
        ("AV:N/AC:L/Au:N/C:P/I:N/A:N", 5.0, "medium"),  # Heartbleed (NVD v2)
        ("AV:N/AC:L/Au:N/C:C/I:C/A:C", 10.0, "high"),  # v2 has no "critical"
        ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", 9.3, "critical"),
        ("CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N", 6.8, "medium"),
    ],
)
def test_known_vectors(vector: str, value: float, rating: str) -> None:
    result = score(vector)
    assert (result.score, result.rating) == (value, rating)


@pytest.mark.parametrize(
    "bad",
    [
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",  # A missing
        "CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:4.0/AV:N",
        "AV:N/AC:L",
        "high",
        "",
    ],
)
def test_invalid_vectors_raise(bad: str) -> None:
    with pytest.raises(CvssError):
        score(bad)
