import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pcmmeta.core import noise

N = 4_000_000


@pytest.fixture(scope="module")
def draws():
    return np.asarray(noise.normal(jax.random.key(0), (N,)), np.float64)


def normal_tail(z: float) -> float:
    """P(|X| > z) for X ~ N(0, 1)."""
    return math.erfc(z / math.sqrt(2.0))


def test_moments_of_the_normal(draws):
    se = 1 / math.sqrt(N)
    assert abs(draws.mean()) < 5 * se
    assert abs(draws.std() - 1.0) < 5 * se / math.sqrt(2)
    assert abs(np.mean(draws**3)) < 5 * math.sqrt(15 / N)  # skewness: var(X³) = 15
    assert abs(np.mean(draws**4) - 3.0) < 5 * math.sqrt(96 / N)  # kurtosis: var(X⁴) = 96


@pytest.mark.parametrize("z", [0.5, 1.0, 2.0, 3.0, 4.0])
def test_tail_fractions_of_the_normal(draws, z):
    p = normal_tail(z)
    se = math.sqrt(p * (1 - p) / N)
    assert abs(np.mean(np.abs(draws) > z) - p) < 5 * se
    assert abs(np.mean(draws > z) - p / 2) < 5 * math.sqrt(p / 2 * (1 - p / 2) / N)  # both sides alike


def test_quantiles_of_the_normal(draws):
    """The whole distribution, not only the moments: Kolmogorov–Smirnov distance at 1% level."""
    x = np.sort(draws[:1_000_000])
    cdf = 0.5 * np.vectorize(math.erfc)(-x / math.sqrt(2.0))
    n = len(x)
    ks = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    assert ks < 1.63 / math.sqrt(n)
    assert np.all(np.isfinite(draws)) and np.max(np.abs(draws)) < 5.7


def test_bits_are_uniform():
    words = np.asarray(noise.bits(jax.random.key(3), (1_000_000,)))
    for bit in range(32):
        ones = np.mean((words >> bit) & 1)
        assert abs(ones - 0.5) < 5 * 0.5 / 1000, bit
    counts = np.bincount(words >> 24, minlength=256)  # chi-square of the top byte, 255 dof
    expected = len(words) / 256
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < 255 + 5 * math.sqrt(2 * 255)


def corr(a, b) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_draws_from_different_keys_and_neighbours_are_uncorrelated():
    n = 1_000_000
    bound = 5 / math.sqrt(n)
    k = jax.random.key(7)
    k1, k2 = jax.random.split(k)
    a, b, c = (np.asarray(noise.normal(kk, (n,))) for kk in (k, k1, k2))
    assert abs(corr(a, b)) < bound and abs(corr(b, c)) < bound and abs(corr(a, c)) < bound
    for seed in (0, 1):  # keys from neighbouring seeds
        d = np.asarray(noise.normal(jax.random.key(seed), (n,)))
        assert abs(corr(a, d)) < bound
    assert abs(corr(a[1:], a[:-1])) < bound  # neighbouring elements (lag 1)
    assert abs(corr(a[1000:], a[:-1000])) < bound
    assert abs(corr(a**2, b**2)) < 2 * bound  # no dependence in magnitude either (var(X²) = 2)
    # a batch of keys (e.g. one per task) gives independent draws
    batch = np.asarray(jax.vmap(lambda kk: noise.normal(kk, (n // 4,)))(jax.random.split(k, 4)))
    for i in range(3):
        assert abs(corr(batch[i], batch[i + 1])) < 5 / math.sqrt(n // 4)


def test_same_key_same_numbers_under_jit_and_vmap():
    key = jax.random.key(11)
    eager = np.asarray(noise.normal(key, (3, 5)))
    jitted = np.asarray(jax.jit(lambda k: noise.normal(k, (3, 5)))(key))
    assert np.array_equal(eager, jitted)
    assert np.array_equal(eager, np.asarray(noise.normal(jax.random.key(11), (3, 5))))
    assert not np.array_equal(eager, np.asarray(noise.normal(jax.random.key(12), (3, 5))))
    keys = jax.random.split(key, 4)
    batched = np.asarray(jax.jit(jax.vmap(lambda k: noise.normal(k, (3, 5))))(keys))
    for i in range(4):
        assert np.array_equal(batched[i], np.asarray(noise.normal(keys[i], (3, 5))))
    # the flat layout: a draw of shape (3, 5) is the draw of shape (15,), reshaped
    assert np.array_equal(eager.ravel(), np.asarray(noise.normal(key, (15,))))


def test_shapes_and_gradients():
    assert noise.normal(jax.random.key(0), ()).shape == ()
    assert noise.normal(jax.random.key(0), (0, 3)).shape == (0, 3)
    assert noise.normal(jax.random.key(0), (2, 3, 4)).dtype == jnp.float32
    key = jax.random.key(5)
    grad = jax.grad(lambda a: jnp.sum(a * noise.normal(key, (4,))))(jnp.ones(4))
    assert np.array_equal(np.asarray(grad), np.asarray(noise.normal(key, (4,))))  # the noise is a constant


def test_uniform_range_moments_and_quantiles():
    u = np.asarray(noise.uniform(jax.random.key(5), (1_000_000,), -5.0, 5.0), np.float64)
    assert u.min() >= -5.0 and u.max() < 5.0
    assert abs(u.mean()) < 4 * 10 / math.sqrt(12 * len(u))
    assert abs(u.var() - 100 / 12) < 0.05
    # every decile holds a tenth of the draws (binomial s.e. 3e-4)
    counts = np.histogram(u, bins=10, range=(-5, 5))[0] / len(u)
    assert np.all(np.abs(counts - 0.1) < 0.002)


def test_uniform_is_reproducible_and_differs_between_keys():
    k1, k2 = jax.random.split(jax.random.key(6))
    a = noise.uniform(k1, (1000, 3))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(jax.jit(lambda k: noise.uniform(k, (1000, 3)))(k1)))
    np.testing.assert_array_equal(np.asarray(jax.vmap(lambda k: noise.uniform(k, (1000, 3)))(jnp.stack([k1, k2]))[0]), np.asarray(a))
    b = np.asarray(noise.uniform(k2, (1000, 3)))
    assert abs(np.corrcoef(np.asarray(a).ravel(), b.ravel())[0, 1]) < 0.1


def test_raw_keys_one_bit_apart_give_unrelated_streams():
    """`jax.random.key(0)` and `key(1)` differ in one bit of their data: the seed words do not."""
    a = np.asarray(noise.normal(jax.random.key(0), (100_000,)))
    b = np.asarray(noise.normal(jax.random.key(1), (100_000,)))
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.02
    s0, s1 = (np.asarray(noise.seed_words(jax.random.key(i))) for i in (0, 1))
    assert all(bin(int(x) ^ int(y)).count("1") >= 8 for x, y in zip(s0, s1))


@pytest.mark.parametrize("impl", ["rbg", "unsafe_rbg"])
def test_four_word_keys_give_unrelated_streams(impl):
    """A user may pass JAX's four-word keys. Their seed words must depend on the whole key: an
    rbg seed key repeats its words ([a, b, a, b]) and `unsafe_rbg`'s fold_in xors the same bits
    into every key, so folding the words by xor would give neighbouring seeds, and the same fold
    of different keys, one stream."""
    n = 200_000
    bound = 5 / math.sqrt(n)
    k0, k1 = jax.random.key(0, impl=impl), jax.random.key(1, impl=impl)
    assert jax.random.key_data(k0).shape == (4,)
    keys = [k0, k1, *jax.random.split(k0, 2), jax.random.fold_in(k0, 5), jax.random.fold_in(k1, 5), jax.random.fold_in(k0, 6)]
    draws = [np.asarray(noise.normal(k, (n,))) for k in keys]
    for i in range(len(draws)):
        assert abs(draws[i].mean()) < bound and abs(draws[i].std() - 1) < 0.01
        for j in range(i):
            assert abs(corr(draws[i], draws[j])) < bound, (i, j)
    words = {tuple(np.asarray(noise.seed_words(k)).tolist()) for k in keys}
    assert len(words) == len(keys)
    np.testing.assert_array_equal(draws[4], np.asarray(jax.jit(lambda k: noise.normal(k, (n,)))(jax.random.fold_in(k0, 5))))
