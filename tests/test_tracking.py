"""Face tracks across sampled frames, and the verdict taken from the most suspicious track."""

from __future__ import annotations

from mesofcn.tracking import FaceTracker, box_iou, most_suspicious_track, summarize_track


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


def frames(scores):
    return [{"index": i, "time": i / 25, "box": [0, 0, 1, 1], "score": s} for i, s in enumerate(scores)]


def test_track_summary_scores():
    track = summarize_track(3, frames([0.2, 0.6, 0.9, 0.3]), threshold=0.5)
    assert track["id"] == 3 and track["num_frames"] == 4
    assert abs(track["score"] - 0.5) < 1e-12 and track["max_score"] == 0.9
    assert track["fraction_fake"] == 0.5 and track["label"] == "fake"


def test_one_swapped_face_among_real_ones_decides_the_verdict():
    real_a = summarize_track(0, frames([0.1] * 10), 0.5)
    swapped = summarize_track(1, frames([0.8] * 10), 0.5)
    real_b = summarize_track(2, frames([0.05] * 10), 0.5)
    assert most_suspicious_track([real_a, swapped, real_b])["id"] == 1


def test_a_one_frame_false_detection_does_not_decide_the_verdict():
    face = summarize_track(0, frames([0.1] * 10), 0.5)
    glitch = summarize_track(1, frames([0.99]), 0.5)
    assert most_suspicious_track([face, glitch])["id"] == 0
    assert most_suspicious_track([glitch])["id"] == 1
    assert most_suspicious_track([]) is None
