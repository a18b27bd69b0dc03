"""rfcr.deploy.resize: the eager fast routes of the exact-size resizes give the plain ops'
values, for every memory format, odd sizes included; never taken while tracing."""
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rfcr.deploy.resize import eager_inference, max_pool_to, upsample_to
from rfcr.models.layers import resize as plain
from tests.reference import nearest_up, window_max

FORMATS = [torch.contiguous_format, torch.channels_last]


def test_eager_inference_only_without_autograd_and_tracers():
    assert not eager_inference()
    with torch.no_grad():
        assert eager_inference()
    with torch.inference_mode():
        assert eager_inference()

    seen = []

    def probe(x):
        seen.append(eager_inference())
        return x + 1

    with torch.no_grad():
        torch.jit.trace(probe, torch.rand(2), check_trace=False)
    assert seen == [False]


@pytest.mark.parametrize('memory_format', FORMATS)
@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), factor=st.sampled_from([2, 4]),
       ceil_h=st.booleans(), ceil_w=st.booleans())
def test_max_pool_to_is_exact(memory_format, h, w, factor, ceil_h, ceil_w):
    size = (-(-h // factor) if ceil_h else h // factor, -(-w // factor) if ceil_w else w // factor)
    assume(0 not in size)
    x = torch.randn(2, 5, h, w).to(memory_format=memory_format)
    expected = window_max(x, size, factor)
    assert torch.equal(plain.max_pool_to(x, size, factor), expected)  # the models' op
    with torch.no_grad():
        assert torch.equal(max_pool_to(x, size, factor), expected)  # the fast route


@pytest.mark.parametrize('memory_format', FORMATS)
@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), dh=st.integers(-1, 1), dw=st.integers(-1, 1))
def test_upsample_to_is_exact(memory_format, h, w, dh, dw):
    x = torch.randn(2, 5, h, w).to(memory_format=memory_format)
    size = (2 * h + dh, 2 * w + dw)
    expected = nearest_up(x, size)
    assert torch.equal(plain.upsample_to(x, size), expected)
    with torch.no_grad():
        assert torch.equal(upsample_to(x, size), expected)


@pytest.mark.parametrize('fast', [False, True])
def test_both_refuse_sizes_outside_the_pyramid(fast):
    pool, up = (max_pool_to, upsample_to) if fast else (plain.max_pool_to, plain.upsample_to)
    with torch.no_grad(), pytest.raises(ValueError, match=r'cannot resize a 9x9 map to 3x3; '
                                        r'expected 4x4 \(floor\) or 5x5 \(ceil\)'):
        pool(torch.rand(1, 1, 9, 9), (3, 3))
    with torch.no_grad(), pytest.raises(ValueError, match=r'cannot resize a 4x4 map to 10x8'):
        up(torch.rand(1, 1, 4, 4), (10, 8))
