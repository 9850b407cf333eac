"""Ternary quantizers: values, scales, straight-through gradients, symbolic use."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, nd

from strassen_gluon.quant import QUANTIZERS, fake_quantize, get_quantizer, threshold, twn


def test_twn_matches_definition():
    rng = np.random.RandomState(0)
    w = rng.randn(6, 5, 3, 3).astype(np.float32)
    levels, alpha = twn(nd, nd.array(w))
    delta = 0.7 * np.abs(w).mean()
    expected = np.sign(w) * (np.abs(w) > delta)
    np.testing.assert_array_equal(levels.asnumpy(), expected)
    assert alpha.shape == (1, 1, 1, 1)
    np.testing.assert_allclose(alpha.asnumpy().item(), np.abs(w)[np.abs(w) > delta].mean(),
                               rtol=1e-5)


def test_twn_per_slice_scales():
    rng = np.random.RandomState(1)
    w = rng.randn(4, 3, 7).astype(np.float32)
    w[2] *= 10  # a slice with a much larger scale must get its own threshold
    levels, alpha = twn(nd, nd.array(w), axis=(1, 2))
    assert alpha.shape == (4, 1, 1)
    for g in range(4):
        delta = 0.7 * np.abs(w[g]).mean()
        np.testing.assert_array_equal(levels[g].asnumpy(), np.sign(w[g]) * (np.abs(w[g]) > delta))
        np.testing.assert_allclose(alpha[g].asnumpy().item(),
                                   np.abs(w[g])[np.abs(w[g]) > delta].mean(), rtol=1e-5)


def test_twn_all_zero_tensor_gives_zero_not_nan():
    levels, alpha = twn(nd, nd.zeros((3, 3)))
    out = (levels * alpha).asnumpy()
    assert np.all(out == 0) and np.all(np.isfinite(out))


def test_threshold_quantizer_levels():
    w = nd.array([-0.9, -0.5, -0.49, 0.0, 0.3, 0.51, 2.0])
    levels, alpha = threshold(nd, w)
    np.testing.assert_array_equal(levels.asnumpy(), [-1, 0, 0, 0, 0, 1, 1])
    assert alpha.asnumpy().item() == 1.0


@pytest.mark.parametrize('name', sorted(QUANTIZERS))
def test_straight_through_gradient_is_identity(name):
    quantizer = get_quantizer(name)
    w = nd.array(np.random.RandomState(2).randn(5, 4))
    w.attach_grad()
    head = nd.array(np.random.RandomState(3).randn(5, 4))
    with autograd.record():
        q = fake_quantize(nd, w, quantizer)
    q.backward(head)
    np.testing.assert_array_equal(w.grad.asnumpy(), head.asnumpy())
    levels, alpha = quantizer(nd, w)
    np.testing.assert_allclose(q.asnumpy(), (levels * alpha).asnumpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('name', sorted(QUANTIZERS))
def test_quantizer_builds_symbolic_graph(name):
    quantizer = get_quantizer(name)
    w = mx.sym.var('w')
    out = fake_quantize(mx.sym, w, quantizer)
    value = np.random.RandomState(4).randn(3, 4).astype(np.float32)
    result = out.eval(ctx=mx.cpu(), w=nd.array(value))[0]
    expected = fake_quantize(nd, nd.array(value), quantizer)
    np.testing.assert_allclose(result.asnumpy(), expected.asnumpy(), rtol=1e-6)


def test_get_quantizer_rejects_unknown():
    with pytest.raises(ValueError, match='twn'):
        get_quantizer('binary')
    assert get_quantizer(twn) is twn
