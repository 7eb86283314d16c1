"""bmg's patch convolution is flax's convolution: same parameters (names, shapes, initial values),
same outputs and gradients (to float rounding), for every padding / stride / size the torsos use
and a few they do not; the torsos build the same parameter tree with either layer."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bmg.agents.torsos import Conv, ImpalaTorso, MinAtarTorso, make_conv, same_padding


@pytest.mark.parametrize(
    "size, kernel, stride, padding, bias",
    [
        ((10, 10), (3, 3), (1, 1), "VALID", True),  # MinAtar
        ((9, 8), (3, 3), (1, 1), "SAME", True),  # odd / even sides
        ((11, 10), (3, 3), (2, 2), "SAME", False),  # stride 2, odd padding split
        ((7, 9), (2, 3), (2, 1), "VALID", True),  # non-square kernel and strides
        ((6, 6), (5, 5), (3, 3), "SAME", True),  # padding larger than one pixel
    ],
)
def test_patch_conv_equals_flax_conv(size, kernel, stride, padding, bias):
    ours = Conv(5, kernel, stride, padding, bias)
    flax = nn.Conv(5, kernel, stride, padding, use_bias=bias)

    def loss(module, params, x):
        return jnp.sum(jnp.sin(module.apply(params, x)))

    @jax.jit  # one program (eagerly, each operation compiles alone)
    def both():
        x = jax.random.normal(jax.random.key(0), (2, 3, *size, 4))  # two leading batch axes
        params = ours.init(jax.random.key(1), x)
        reference = flax.init(jax.random.key(1), x)
        shifted = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero bias too
        outputs = ours.apply(shifted, x), flax.apply(shifted, x)
        grads = (
            jax.grad(loss, argnums=(1, 2))(ours, shifted, x),
            jax.grad(loss, argnums=(1, 2))(flax, shifted, x),
        )
        return (params, reference), outputs, grads

    (params, reference), (y, expected), (grads, expected_grads) = both()
    assert jax.tree.structure(params) == jax.tree.structure(reference)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(reference), strict=True):
        np.testing.assert_array_equal(a, b)  # same initial values from the same key
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_same_padding_is_xlas_rule():
    assert same_padding(10, 3, 1) == (1, 1)
    assert same_padding(11, 3, 2) == (1, 1)  # 6 outputs: (6 - 1) * 2 + 3 - 11 = 2
    assert same_padding(10, 3, 2) == (0, 1)  # the odd pixel after
    assert same_padding(84, 3, 2) == (0, 1)
    assert same_padding(3, 1, 1) == (0, 0)


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda conv: MinAtarTorso(8, 16, conv=conv), (10, 10, 4)),
        (lambda conv: ImpalaTorso((4, 8), 1, 16, conv=conv), (13, 12, 3)),
    ],
)
def test_torsos_are_the_same_function_with_either_convolution(make, shape):
    patches, xla = make("patches"), make("xla")

    @jax.jit  # one program (eagerly, each operation compiles alone)
    def both():
        obs = jax.random.uniform(jax.random.key(2), (5, *shape))
        params = patches.init(jax.random.key(3), obs)
        reference = xla.init(jax.random.key(3), obs)
        return (params, reference), (patches.apply(params, obs), xla.apply(params, obs))

    (params, reference), (y, expected) = both()
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(reference), strict=True):
        np.testing.assert_array_equal(a, b)
    assert jax.tree.structure(params) == jax.tree.structure(reference)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_bad_choices_are_one_sentence():
    with pytest.raises(ValueError, match="conv must be 'patches' or 'xla', got 'cudnn'"):
        make_conv("cudnn")
    with pytest.raises(ValueError, match="padding must be 'SAME' or 'VALID', got 'CIRCULAR'"):
        Conv(2, padding="CIRCULAR").init(jax.random.key(0), jnp.ones((1, 4, 4, 1)))
