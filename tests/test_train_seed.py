"""RNG capture and restore: every stream a run draws from replays after a restore."""

import io
import random

import numpy as np
import pytest
import torch

from rnnlab.train.seed import capture_rng_state, restore_rng_state, seed_everything


def _draws(generator):
    return (
        random.random(),
        random.gauss(0, 1),
        np.random.rand(3).tolist(),
        torch.rand(3).tolist(),
        torch.randperm(10, generator=generator).tolist(),
    )


def test_restored_state_replays_python_numpy_torch_and_generator_draws():
    seed_everything(7)
    generator = torch.Generator().manual_seed(1)
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    state = capture_rng_state([generator])
    buffer = io.BytesIO()
    torch.save(state, buffer)  # what a checkpoint does with it
    buffer.seek(0)
    first = _draws(generator)
    restore_rng_state(torch.load(buffer, weights_only=True), [generator])
    assert _draws(generator) == first


def test_seed_everything_repeats_the_same_draws():
    generator = torch.Generator().manual_seed(0)
    seed_everything(3)
    first = _draws(generator)
    seed_everything(3)
    generator.manual_seed(0)
    assert _draws(generator) == first


def test_restore_refuses_a_different_number_of_generators():
    state = capture_rng_state([torch.Generator()])
    with pytest.raises(ValueError, match="holds 1 generator\\(s\\) but 0 were given"):
        restore_rng_state(state, [])
