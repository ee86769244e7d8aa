import pytest

from tseg.runtime.errors import TsegError
from tseg.train.schedules import SCHEDULES, LrSchedule


@pytest.mark.parametrize("name", [s for s in SCHEDULES if s != "constant"])
def test_warmup_then_decay_pins_start_peak_and_end(name):
    schedule = LrSchedule(name=name, peak_lr=0.01, total_steps=101, warmup_steps=10, min_lr=1e-4)
    assert schedule(0) == 0.0
    assert schedule(5) == pytest.approx(0.005)
    assert schedule(10) == pytest.approx(0.01)
    assert schedule(100) == pytest.approx(1e-4)  # warmup-step: 0.01 * 0.1**3 = 1e-5, floored at min_lr
    lrs = [schedule(s) for s in range(10, 101)]
    assert all(a >= b - 1e-12 for a, b in zip(lrs, lrs[1:], strict=False)), "decay never rises"


def test_cosine_midpoint_and_poly_shape():
    cosine = LrSchedule(name="warmup-cosine", peak_lr=1.0, total_steps=21, warmup_steps=0)
    assert cosine(10) == pytest.approx(0.5)
    poly = LrSchedule(name="warmup-poly", peak_lr=1.0, total_steps=21)
    assert poly(10) == pytest.approx(0.5**0.9)


def test_step_decay_drops_by_gamma():
    schedule = LrSchedule(name="warmup-step", peak_lr=1.0, total_steps=31, step_every=10, step_gamma=0.5)
    assert [schedule(s) for s in (0, 9, 10, 20, 30)] == [1.0, 1.0, 0.5, 0.25, 0.125]


def test_constant_with_and_without_warmup():
    assert LrSchedule(name="constant", peak_lr=0.1, total_steps=5)(0) == 0.1
    warm = LrSchedule(name="constant", peak_lr=0.1, total_steps=50, warmup_steps=4)
    assert [warm(s) for s in (0, 2, 4, 49)] == pytest.approx([0.0, 0.05, 0.1, 0.1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "linear"}, "unknown LR schedule 'linear'"),
        ({"warmup_steps": 100}, "must be shorter than the training"),
        ({"min_lr": 1.0}, "min_lr <= peak_lr"),
    ],
)
def test_bad_schedules(kwargs, message):
    args = {"name": "warmup-cosine", "peak_lr": 0.1, "total_steps": 100} | kwargs
    with pytest.raises(TsegError, match=message):
        LrSchedule(**args)
