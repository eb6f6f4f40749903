"""Each hint fires on the pattern it names, and stays silent on a correct gradient."""

from __future__ import annotations

import numpy as np
import pytest

from gradverify import hints
from gradverify.results import Role

RNG = np.random.default_rng(0)
NUMERIC = RNG.standard_normal((4, 4))


@pytest.mark.parametrize(
    ("analytic", "expected"),
    [
        (-NUMERIC, "sign error"),
        (0.5 * NUMERIC, "missing factor of 2"),
        (2 * NUMERIC, "extra factor of 2"),
        (4 * NUMERIC, "missing 1/N (N = 4"),
        (NUMERIC / 4, "extra 1/N (N = 4"),
        (3.7 * NUMERIC, "constant factor"),
        (np.zeros((4, 4)), "never written"),
        (NUMERIC.T, "transpose"),
        (np.where(NUMERIC > 0, NUMERIC, 0.0), "zero where numeric is not"),
    ],
)
def test_hint_names_the_pattern(analytic, expected):
    assert expected in hints.first_hint(analytic, NUMERIC, hints.Evidence(batch_size=4))


def test_missing_mask_hint():
    numeric = np.where(NUMERIC > 0, NUMERIC, 0.0)
    assert "missing mask" in hints.first_hint(NUMERIC, numeric)


def test_inverted_mask_hint():
    numeric = np.where(NUMERIC > 0, NUMERIC, 0.0)
    analytic = np.where(NUMERIC > 0, 0.0, NUMERIC)
    assert "inverted mask" in hints.first_hint(analytic, numeric)


def test_a_second_mask_is_not_called_inverted():
    kept = NUMERIC > 0
    other = np.roll(kept, 1, axis=1)  # another draw: agrees on some units, not on others
    numeric, analytic = np.where(kept, NUMERIC, 0.0), np.where(other, NUMERIC, 0.0)
    said = hints.first_hint(analytic, numeric)
    assert "a mask other than forward's" in said and "inverted" not in said


def test_an_error_confined_to_a_row_a_column_or_the_border_is_named():
    numeric = RNG.standard_normal((2, 5, 6))
    row, column, border = numeric.copy(), numeric.copy(), numeric.copy()
    row[:, 4, :] = 0  # the last row forgotten
    column[:, :, 2] *= 1.5
    border[:, [0, -1], :] = 0
    border[:, :, [0, -1]] = 0
    assert "in row 4 (the last) of the last two axes" in hints.confined(row, numeric)
    assert "in column 2 of the last two axes" in hints.confined(column, numeric)
    assert "on the border of the last two axes" in hints.confined(border, numeric)
    two_rows = numeric.copy()
    two_rows[:, [1, 3], :] *= 1.5  # near misses: two rows, one element, everywhere
    one = numeric.copy()
    one[0, 2, 3] += 1.0
    small = RNG.standard_normal((3, 4))  # 10 of 12 elements are border: 4 errors prove little
    few = small.copy()
    few[0, :2] += 1.0
    few[2, 2:] += 1.0
    for near_miss, truth in ((two_rows, numeric), (one, numeric), (1.5 * numeric, numeric)):
        assert hints.confined(near_miss, truth) is None
    assert hints.confined(few, small) is None
    two_in_a_row = small.copy()  # ReLU's two negatives in one row: no evidence of a bound
    two_in_a_row[1, :2] = 0.0
    assert hints.confined(two_in_a_row, small) is None


def test_unused_array_hint():
    assert "copy" in hints.first_hint(NUMERIC, np.zeros((4, 4)))


def test_no_hint_for_noise_only_differences():
    assert hints.first_hint(NUMERIC * (1 + 1e-7 * RNG.standard_normal((4, 4))), NUMERIC) == ""


def test_swapped_pair():
    x, y = RNG.standard_normal(3), RNG.standard_normal(3)
    assert "swapped" in hints.swapped(("dx", y, x), ("dy", x, y))
    assert hints.swapped(("dx", x, x), ("dy", y, y)) is None


@pytest.mark.parametrize(
    ("array_shape", "grad_shape", "expected", "not_said"),
    [
        ((2, 3, 2), (2, 6), "reshape dx back", "transposed"),
        ((3,), (2,), "summed over the wrong axis", "batch"),
        # a forgotten transpose of a non-square W: no advice to reshape it
        ((4, 3), (3, 4), "shape transposed ((3, 4) for (4, 3))", "reshape"),
        ((4, 3), (2, 6), "reshape", "transposed"),  # its near miss: the same elements
        # a dgamma not summed over the batch
        ((3,), (5, 3), "not summed over the batch (axis 0)", "reshape"),
        ((3,), (1, 3), "reshape dx back", "batch"),  # summed with keepdims: a near miss
        ((3,), (5, 4), "must have x's shape (3,), not (5, 4)", "batch"),  # its near miss
        ((4, 3), (3, 2), "must have x's shape (4, 3), not (3, 2)", "transposed"),  # no guess
    ],
)
def test_wrong_shape(array_shape, grad_shape, expected, not_said):
    said = hints.wrong_shape("x", "dx", array_shape, grad_shape)
    assert expected in said and not_said not in said


def test_a_factor_of_2_at_a_batch_of_2_names_both_causes():
    both = hints.constant_ratio(2 * NUMERIC, NUMERIC, batch_size=2)
    assert "an extra factor of 2, or a missing 1/N (N = 2)?" in both
    half = hints.constant_ratio(0.5 * NUMERIC, NUMERIC, batch_size=2)
    assert "a missing factor of 2, or an extra 1/N (N = 2)?" in half
    assert "1/N" not in hints.constant_ratio(2 * NUMERIC, NUMERIC, batch_size=3)  # near miss


# ---------------------------------------------------------------- hints that need the inputs

X = RNG.standard_normal((4, 5))  # about half negative
SLOPES = np.where(X < 0, 0.1, 1.0)  # a LeakyReLU's derivative


def test_a_sign_flipped_on_one_branch():
    analytic = np.where(X < 0, -0.1, 1.0)
    found = hints.first_hint(analytic, SLOPES, hints.Evidence(name="x", values=X))
    assert "analytic = -numeric exactly where x < 0" in found


def test_a_wrong_slope_on_one_branch():
    analytic = np.where(X < 0, 0.2, 1.0)
    assert "2 x numeric exactly where x < 0" in hints.one_branch(analytic, SLOPES, X, "x")


@pytest.mark.parametrize(
    "analytic",
    [
        -SLOPES,  # wrong everywhere: a sign error, not one branch
        np.where((X < 0) & (np.arange(20).reshape(4, 5) % 3 == 0), -0.1, SLOPES),  # some of it
        np.where(X > 1, 2.0, SLOPES),  # wrong on elements that are not a sign's side
    ],
)
def test_no_branch_hint_without_the_exact_branch(analytic):
    assert hints.one_branch(analytic, SLOPES, X, "x") is None


IDX = np.array([0, 2, 2, 4, 0, 1])  # rows 0 and 2 twice, rows 1 and 4 once, row 3 never
DOUT = RNG.standard_normal((6, 3))


def _table_gradient(accumulate):
    dW = np.zeros((5, 3))
    if accumulate:
        np.add.at(dW, IDX, DOUT)
    else:
        dW[IDX] = DOUT
    return dW


def test_repeated_indices_not_accumulated():
    evidence = hints.Evidence(role=Role.PARAMETER, indices={"idx": IDX})
    found = hints.first_hint(_table_gradient(False), _table_gradient(True), evidence)
    assert "rows idx holds more than once (0, 2)" in found and "np.add.at(dW, idx" in found
    assert "right in those it holds once" in found


def test_repeats_with_no_row_held_once_need_the_rows_of_dout_as_evidence():
    idx = np.array([0, 0, 1, 1, 2, 2])  # every row it holds, it holds twice; row 4 never
    dW, right = np.zeros((5, 3)), np.zeros((5, 3))
    dW[idx] = DOUT
    np.add.at(right, idx, DOUT)
    assert hints.repeats_not_accumulated(dW, right, {"idx": idx}) is None  # no evidence
    found = hints.repeats_not_accumulated(dW, right, {"idx": idx}, DOUT)
    assert "each holding one of its rows of dout" in found
    halved = right / 2  # wrong in the same rows, but not an assignment's rows of dout
    assert hints.repeats_not_accumulated(halved, right, {"idx": idx}, DOUT) is None


def test_no_repeat_hint_for_an_input_gradient():
    labels = np.array([1, 1])  # a loss whose dx is wrong in row 1: labels are no index
    numeric = RNG.standard_normal((2, 3))
    analytic = numeric.copy()
    analytic[1] = 0.0
    evidence = hints.Evidence(role=Role.INPUT, indices={"t": labels})
    assert "np.add.at" not in hints.first_hint(analytic, numeric, evidence)


def test_no_repeat_hint_when_a_row_held_once_is_wrong_too():
    analytic = _table_gradient(False)
    analytic[1] += 1.0  # row 1 is held once: a different bug as well
    assert hints.repeats_not_accumulated(analytic, _table_gradient(True), {"idx": IDX}) is None
    once = np.array([0, 1, 2, 3, 4, 4])
    assert hints.repeats_not_accumulated(analytic, _table_gradient(True), {"idx": once}) is None


def _softmax_loss(scores, labels, eps):
    shifted = scores - scores.max(axis=1, keepdims=True)
    y = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    return -np.mean(np.log(y[np.arange(len(labels)), labels] + eps)), y


def _loss_gradients(scores, labels, eps, h=1e-6):
    """Backward's (y - t)/N, and central differences of the loss with `eps` in its log."""
    _, y = _softmax_loss(scores, labels, eps)
    analytic = (y - np.eye(scores.shape[1])[labels]) / len(labels)
    numeric = np.zeros_like(scores)
    for index in np.ndindex(scores.shape):
        up, down = scores.copy(), scores.copy()
        up[index] += h
        down[index] -= h
        numeric[index] = (
            _softmax_loss(up, labels, eps)[0] - _softmax_loss(down, labels, eps)[0]
        ) / (2 * h)
    return analytic, numeric


LABELS = np.array([0, 3, 1, 2, 4, 1])


@pytest.mark.parametrize(("scale", "eps"), [(10.0, 1e-7), (1.0, 1e-3)])
def test_a_loss_that_saturates_names_its_eps(scale, eps):
    scores = scale * np.random.default_rng(3).standard_normal((6, 5))
    analytic, numeric = _loss_gradients(scores, LABELS, eps)
    found = hints.first_hint(analytic, numeric, hints.Evidence(values=scores))
    assert f"log(y + eps), eps ~ {eps:.1e}" in found


def test_rows_scaled_by_factors_unrelated_to_the_probabilities_are_not_saturation():
    scores = np.random.default_rng(3).standard_normal((6, 5))
    analytic, numeric = _loss_gradients(scores, LABELS, 0.0)
    numeric[[1, 4]] *= [[0.5], [0.8]]  # two rows scaled: no common eps fits them
    assert hints.saturated_loss(analytic, numeric, scores) is None
    assert hints.saturated_loss(analytic, numeric / 4, scores) is None  # every row by 1/4
