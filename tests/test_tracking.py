"""Face tracks across sampled frames, and the verdict taken from the most suspicious track."""

from __future__ import annotations

from mesofcn.detection.tracking import FaceTracker, box_iou, face_size, most_suspicious_track, summarize_track


def test_box_iou_values():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == 50 / 150
    assert box_iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


def test_two_faces_keep_their_tracks_while_moving():
    tracker = FaceTracker()
    left, right = [10.0, 50.0, 80.0, 80.0], [300.0, 60.0, 80.0, 80.0]
    ids = []
    for step in range(6):
        # The order of detections changes from frame to frame; the tracks must not.
        boxes = [(left[0] + 6 * step, *left[1:]), (right[0] - 6 * step, *right[1:])]
        frame_ids = tracker.update(boxes if step % 2 == 0 else boxes[::-1])
        ids.append(frame_ids if step % 2 == 0 else frame_ids[::-1])
    assert all(pair == [0, 1] for pair in ids)


def test_fast_motion_is_linked_by_centre_distance():
    tracker = FaceTracker()
    assert tracker.update([(0, 0, 100, 100)]) == [0]
    assert box_iou((0, 0, 100, 100), (35, 35, 100, 100)) < 0.3
    assert tracker.update([(35, 35, 100, 100)]) == [0]  # low overlap, but the centre moved 0.49 box sides
    assert tracker.update([(400, 0, 100, 100)]) == [1]  # far away: a new face


def test_a_track_survives_short_gaps_and_closes_after_long_ones():
    tracker = FaceTracker(max_missed=2)
    box = (100, 100, 50, 50)
    assert tracker.update([box]) == [0]
    assert tracker.update([]) == []
    assert tracker.update([]) == []
    assert tracker.update([box]) == [0]  # missed 2 frames: still open
    for _ in range(3):
        tracker.update([])
    assert tracker.update([box]) == [1]  # missed 3 > 2: a new track


def frames(scores, size=100.0, start=0):
    """One face per frame from frame `start` on, `size` px boxes, the given P(fake) scores."""
    return [
        {"index": start + i, "time": (start + i) / 25, "box": [0.0, 0.0, 0.8 * size, size], "score": s}
        for i, s in enumerate(scores)
    ]


def track(track_id, scores, size=100.0, analysed=10, start=0):
    return summarize_track(track_id, frames(scores, size, start), 0.5, frames_analysed=analysed)


def test_track_summary_scores_size_and_share():
    summary = summarize_track(3, frames([0.2, 0.6, 0.9, 0.3]), threshold=0.5, frames_analysed=8)
    assert summary["id"] == 3 and summary["num_frames"] == 4
    assert abs(summary["score"] - 0.5) < 1e-12 and summary["max_score"] == 0.9
    assert summary["fraction_fake"] == 0.5 and summary["label"] == "fake"
    assert summary["face_size"] == 100.0 and summary["share"] == 0.5


def test_face_size_is_the_median_of_the_longer_box_side():
    boxes = [[0, 0, 50, 60], [0, 0, 90, 70], [0, 0, 40, 300]]  # longer sides 60, 90, 300
    summary = summarize_track(0, [{"box": box, "score": 0.1} for box in boxes], 0.5, frames_analysed=3)
    assert face_size((0, 0, 90, 70)) == 90.0
    assert summary["face_size"] == 90.0  # the median: one huge box does not move it


def test_one_swapped_face_among_real_ones_decides_the_verdict():
    real_a, swapped, real_b = track(0, [0.1] * 10), track(1, [0.8] * 10), track(2, [0.05] * 10)
    assert most_suspicious_track([real_a, swapped, real_b])["id"] == 1
    assert all(t["eligible"] for t in (real_a, swapped, real_b))


def test_a_one_frame_false_detection_does_not_decide_the_verdict():
    face, glitch = track(0, [0.1] * 10), track(1, [0.99], start=4)
    assert most_suspicious_track([face, glitch])["id"] == 0
    assert face["eligible"] and not glitch["eligible"]
    alone = track(1, [0.99], analysed=1)  # an image: its one face covers its one frame
    assert most_suspicious_track([alone])["id"] == 1 and alone["eligible"]
    assert most_suspicious_track([]) is None
