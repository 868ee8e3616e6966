"""Which face tracks may decide a video's verdict: big enough (median face size against the largest track's) and
seen long enough (share of the analysed frames); the most suspicious of those decides."""

from __future__ import annotations

import pytest

from mesofcn.detection.tracking import DEFAULT_MIN_FACE_FRACTION, DEFAULT_MIN_TRACK_SHARE, most_suspicious_track
from tests.test_tracking import track


def test_defaults():
    assert (DEFAULT_MIN_FACE_FRACTION, DEFAULT_MIN_TRACK_SHARE) == (0.5, 0.35)


def test_a_small_inset_face_does_not_decide_even_when_it_scores_higher():
    main = track(0, [0.1] * 50, size=200, analysed=50)
    inset = track(1, [0.95] * 50, size=60, analysed=50)  # a face on a TV behind the speaker, in every frame
    verdict = most_suspicious_track([main, inset])
    assert verdict["id"] == 0 and main["eligible"] and not inset["eligible"]
    assert most_suspicious_track([main, inset], min_face_fraction=0.25)["id"] == 1  # the setting is honoured


def test_a_short_flicker_does_not_decide():
    main = track(0, [0.1] * 50, size=200, analysed=50)
    flicker = track(1, [0.99, 0.99], size=210, analysed=50, start=20)  # two frames, as big as the main face
    assert most_suspicious_track([main, flicker])["id"] == 0
    assert main["eligible"] and not flicker["eligible"]
    assert most_suspicious_track([main, flicker], min_track_share=0.0)["id"] == 1


def test_two_equal_faces_one_swapped_the_swapped_one_decides():
    left = track(0, [0.2] * 40, size=150, analysed=40)
    right = track(1, [0.8] * 40, size=140, analysed=40)
    assert most_suspicious_track([left, right])["id"] == 1
    assert left["eligible"] and right["eligible"]


def test_a_big_short_false_detection_does_not_set_the_size_scale():
    main = track(0, [0.1] * 50, size=120, analysed=50)
    giant = track(1, [0.9], size=600, analysed=50, start=7)  # one frame, 5x the main face
    assert most_suspicious_track([main, giant])["id"] == 0
    assert main["eligible"] and not giant["eligible"]


def test_size_and_share_thresholds_are_inclusive():
    main = track(0, [0.1] * 20, size=100, analysed=20)
    edge = track(1, [0.9] * 7, size=50, analysed=20)  # exactly half the size, exactly 35 % of the frames
    assert most_suspicious_track([main, edge])["id"] == 1 and edge["eligible"]


def test_fallback_when_no_track_covers_the_share():
    """A face lost and found again: every piece under 35 % of the frames. The big faces seen longest decide."""
    pieces = [track(i, [0.2] * 5, size=200, analysed=20, start=5 * i) for i in range(3)]
    pieces.append(track(3, [0.6] * 5, size=190, analysed=20, start=15))
    bystander = track(4, [0.99] * 5, size=40, analysed=20)
    verdict = most_suspicious_track([*pieces, bystander])
    assert verdict["id"] == 3  # the most suspicious of the longest big tracks
    assert not any(t["eligible"] for t in [*pieces, bystander])


def test_image_faces_only_the_size_floor_applies():
    big, small = track(0, [0.1], size=300, analysed=1), track(1, [0.9], size=100, analysed=1)
    second = track(2, [0.7], size=200, analysed=1)
    assert most_suspicious_track([big, small, second])["id"] == 2
    assert big["eligible"] and second["eligible"] and not small["eligible"]


@pytest.mark.parametrize("setting", ["min_face_fraction", "min_track_share"])
@pytest.mark.parametrize("value", [-0.1, 1.5, True])
def test_out_of_range_settings_are_refused(setting, value):
    with pytest.raises(ValueError, match=setting):
        most_suspicious_track([track(0, [0.1])], **{setting: value})
