"""The early-stopping rule of the trained baselines (harness.baselines.stopping), on scripted validation hits."""

from __future__ import annotations

from harness.baselines.stopping import ValidationStopper


def _run(hits, patience_steps, tolerance_hits=1, steps=10):
    stopper = ValidationStopper(patience_steps, tolerance_hits)
    for epoch, h in enumerate(hits, start=1):
        _, stop = stopper.observe(epoch, h, steps)
        if stop:
            return epoch, stopper
    return len(hits), stopper


def test_a_steady_one_hit_climb_is_a_gain_every_second_epoch():
    last, stopper = _run(list(range(100, 120)), patience_steps=20)
    assert last == 20 and stopper.stopped_after_step is None  # never two epochs without a gain
    assert stopper.gains == list(range(1, 21, 2))
    assert stopper.kept_epoch == 20


def test_patience_is_counted_in_optimiser_steps_not_epochs():
    flat = [50, 80] + [80] * 20
    assert _run(flat, patience_steps=100, steps=10)[0] == 12  # 10 epochs of 10 steps after the gain at 2
    assert _run(flat, patience_steps=100, steps=50)[0] == 4  # 2 epochs of 50 steps


def test_on_a_plateau_the_latest_epoch_within_tolerance_is_kept():
    last, stopper = _run([50, 80, 81, 79, 78, 80, 77], patience_steps=50)
    assert last == 7 and stopper.stopped_after_step == 70
    assert stopper.kept_epoch == 6  # 80 is within one hit of the best 81; 78 and 77 are not


def test_tolerance_zero_is_the_classic_rule_with_ties_kept_latest():
    _, stopper = _run([5, 6, 6, 5], patience_steps=1000, tolerance_hits=0)
    assert stopper.gains == [1, 2] and stopper.kept_epoch == 3


def test_a_drop_after_the_best_keeps_the_best():
    _, stopper = _run([10, 40, 20, 20, 20], patience_steps=1000)
    assert stopper.kept_epoch == 2


def test_keep_within_se_keeps_the_latest_epoch_within_one_standard_error_of_the_best():
    # SIM2's shape: 250 validation users, scores wander around 90 hits (R@10 ~0.36) with no trend; the best
    # (95, epoch 2) is 1 SE = sqrt(95 * 155 / 250) = 7.67 hits above 87.33.
    hits = [92, 95, 94, 85, 88, 90, 86, 88, 87]
    plain = ValidationStopper(1000, 1)
    wide = ValidationStopper(1000, 1, keep_within_se=1.0, n_valid=250)
    for epoch, h in enumerate(hits, start=1):
        plain.observe(epoch, h, 10)
        wide.observe(epoch, h, 10)
    assert plain.kept_epoch == 3  # one hit of 95
    assert abs(wide.keep_tolerance() - 7.675) < 0.01
    assert wide.kept_epoch == 8  # 88 >= 87.33; epoch 9's 87 is not
    assert wide.gains == plain.gains == [1, 2]  # the gains, so the stopping, are untouched
    assert wide.describe()["kept_epoch"] == 8 and wide.describe()["keep_within_se"] == 1.0


def test_keep_within_se_never_tightens_the_hit_tolerance():
    # A near-perfect score has a standard error under one hit: tolerance_hits still applies.
    stopper = ValidationStopper(1000, 2, keep_within_se=1.0, n_valid=100)
    for epoch, h in enumerate([100, 100, 98], start=1):
        stopper.observe(epoch, h, 10)
    assert stopper.keep_tolerance() == 2.0 and stopper.kept_epoch == 3
