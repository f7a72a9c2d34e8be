"""Property-based differential tests: random valid cells, compiled vs the reference interpreter."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.differential import assert_same
from tests.support.generators import cells, reads_inputs_elementwise

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(graph=cells(), T=st.integers(1, 4), seed=st.integers(0, 3))
def test_random_cells_match_interpreter(graph, T, seed):
    """Outputs, final states and every gradient agree (float64, 1e-5)."""
    size = 5
    assert_same(graph, size, size, T=T, B=2, static_size=size, seed=seed, stable_only=True)


@SETTINGS
@given(graph=cells(elementwise_inputs=False), seed=st.integers(0, 3))
def test_random_cells_with_other_input_sizes(graph, seed):
    assert not reads_inputs_elementwise(graph)
    assert_same(graph, 3, 4, T=3, B=2, static_size=6, seed=seed, stable_only=True)


@settings(max_examples=60, deadline=None)
@given(graph=cells())
def test_random_cells_autograd_mode(graph):
    assert_same(graph, 4, 4, T=3, B=2, static_size=4, mode="autograd", stable_only=True)


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=cells(memory=True), T=st.integers(1, 4), seed=st.integers(0, 3),
       mode=st.sampled_from(["fused", "autograd"]))
def test_random_cells_with_attention_match_interpreter(graph, T, seed, mode):
    """attend() of every kind, in the loop or hoisted, with a padded memory: the generated
    forward and backward (and the generated step under autograd) against the interpreter."""
    assert graph.memory
    assert_same(graph, 5, 5, T=T, B=2, static_size=5, seed=seed, mode=mode, stable_only=True)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=cells(memory=True, values_memory=True, max_nodes=8, favour="attend"), T=st.integers(1, 3), seed=st.integers(0, 3),
       mode=st.sampled_from(["fused", "autograd"]))
def test_random_cells_with_key_value_attention_match_interpreter(graph, T, seed, mode):
    """attend(q, K, V) of every kind, keys and values from two memories (or one twice), in the loop
    or hoisted: generated forward and backward against the interpreter, float64."""
    assert len(graph.memory) == 2
    assert_same(graph, 5, 5, T=T, B=2, static_size=5, seed=seed, mode=mode, stable_only=True)


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graph=cells(memory_state=True, max_nodes=8, location=None), T=st.integers(1, 4), seed=st.integers(0, 3),
       mode=st.sampled_from(["fused", "autograd"]))
def test_random_cells_with_a_memory_state_match_interpreter(graph, T, seed, mode):
    """address, read and write on an NTM memory state (B, N, H) carried over the steps (and, drawn,
    the location ops on a weights state): the generated forward and backward (and the step under
    autograd) against the interpreter."""
    assert graph.memory_states
    assert_same(graph, 5, 5, T=T, B=2, static_size=5, seed=seed, mode=mode, stable_only=True)
