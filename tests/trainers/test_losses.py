"""Preference losses against values computed by hand."""

import math

import pytest
import torch

from motion_align.trainers.losses import logratio_difference, preference_loss


def test_logratio_difference():
    h = logratio_difference(
        torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0])
    )
    assert h.tolist() == [2.0]


def test_sigmoid_by_hand():
    h = torch.tensor([2.0, 2.0])
    plain = preference_loss("sigmoid", h, beta=0.1)
    assert plain[0].item() == pytest.approx(math.log(1 + math.exp(-0.2)))
    margin = preference_loss("sigmoid", h, beta=0.1, margin=torch.tensor([0.5, 0.0]))
    assert margin.tolist() == pytest.approx([math.log(1 + math.exp(0.3)), math.log(1 + math.exp(-0.2))])
    smooth = preference_loss("sigmoid", h, beta=0.1, label_smoothing=torch.tensor([0.2, 0.0]))
    expected = 0.8 * math.log(1 + math.exp(-0.2)) + 0.2 * math.log(1 + math.exp(0.2))
    assert smooth.tolist() == pytest.approx([expected, math.log(1 + math.exp(-0.2))])


def test_ipo_by_hand_and_its_smoothed_minimiser():
    h = torch.tensor([2.0])
    assert preference_loss("ipo", h, beta=0.1).item() == pytest.approx(9.0)  # (2 - 1/(2*0.1))^2
    assert preference_loss("ipo", h, beta=0.1, margin=1.0).item() == pytest.approx(169.0)  # (2 - 15)^2
    assert preference_loss("ipo", h, beta=0.1, label_smoothing=0.25).item() == pytest.approx(
        0.75 * 9 + 0.25 * 49
    )
    # gradient descent on h finds (1 - 2 eps)(1/2 + m) / beta
    z = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([z], lr=0.1)
    for _ in range(300):
        optimizer.zero_grad()
        preference_loss("ipo", z, beta=0.1, margin=0.5, label_smoothing=0.2).sum().backward()
        optimizer.step()
    assert z.item() == pytest.approx((1 - 0.4) * 1.0 / 0.1, rel=1e-4)


def test_hinge_by_hand():
    h = torch.tensor([2.0, 20.0])
    assert preference_loss("hinge", h, beta=0.1).tolist() == pytest.approx([0.8, 0.0])
    assert preference_loss("hinge", h, beta=0.1, margin=1.0).tolist() == pytest.approx([1.8, 0.0])
    assert preference_loss("hinge", h[:1], beta=0.1, label_smoothing=0.5).item() == pytest.approx(1.0)
