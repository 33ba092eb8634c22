"""The one seeding scheme: named streams are pure functions of their keys and never overlap."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from atomizer.training.seed import (
    Stream,
    epoch_permutation,
    isolated_rng,
    seed_everything,
    stream_rng,
    stream_seed,
)

seeds = st.integers(0, 2**32)
keys = st.lists(st.integers(0, 10_000), max_size=3)


@settings(max_examples=30, deadline=None)
@given(seed=seeds, stream=st.sampled_from(list(Stream)), keys=keys)
def test_a_stream_is_a_pure_function_of_its_keys(seed, stream, keys):
    a = stream_rng(seed, stream, *keys).random(4)
    np.testing.assert_array_equal(a, stream_rng(seed, stream, *keys).random(4))
    assert stream_seed(seed, stream, *keys) == stream_seed(seed, stream, *keys)
    assert 0 <= stream_seed(seed, stream, *keys) < 2**63


@settings(max_examples=30, deadline=None)
@given(seed=seeds, keys=keys)
def test_named_streams_differ(seed, keys):
    draws = {tuple(stream_rng(seed, s, *keys).integers(0, 2**62, 2)) for s in Stream}
    assert len(draws) == len(Stream)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 200), seed=seeds, epoch=st.integers(0, 1000))
def test_epoch_permutation_is_a_permutation_of_seed_and_epoch(n, seed, epoch):
    order = epoch_permutation(n, seed, epoch)
    assert sorted(order.tolist()) == list(range(n))
    np.testing.assert_array_equal(order, epoch_permutation(n, seed, epoch))


def test_negative_seeds_are_refused():
    with pytest.raises(ValueError, match="non-negative"):
        stream_rng(-1, Stream.SAMPLE_ORDER, 0)


def test_a_run_leaves_the_callers_generators_alone():
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    with isolated_rng():
        seed_everything(123)
        inside = float(torch.rand(1))
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected
    with isolated_rng():
        seed_everything(123)
        assert float(torch.rand(1)) == inside  # the run's own draws depend on its seed alone
