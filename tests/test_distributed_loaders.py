"""rnnlab.train.distributed in one process: the context from the environment, the loaders' maths."""

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import TensorDataset

from rnnlab.train import (
    DistributedContext,
    init_distributed,
    make_eval_loader,
    make_loader,
    wrap_model,
)
from rnnlab.train.distributed import ShardSampler

TORCHRUN_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def numbered(n):
    """A dataset whose i-th sample is the number i, so batches show which samples they hold."""
    return TensorDataset(torch.arange(n))


def flat(lists):
    return [item for sub in lists for item in sub]


def global_batches(n, batch_size, world_size, epoch, drop_last=False):
    """The samples of each optimiser step, over all `world_size` processes, as sorted lists."""
    per_rank = []
    for rank in range(world_size):
        ctx = DistributedContext(rank=rank, world_size=world_size)
        loader = make_loader(
            numbered(n), batch_size, shuffle=True, seed=7, ctx=ctx, drop_last=drop_last
        )
        loader.sampler.set_epoch(epoch)
        per_rank.append([batch.tolist() for (batch,) in loader])
    assert len({len(batches) for batches in per_rank}) == 1, "DDP needs equal batch counts"
    return [sorted(flat(step)) for step in zip(*per_rank, strict=True)]


@pytest.mark.parametrize("world_size", [2, 4])
def test_global_batches_hold_the_same_samples_for_any_number_of_processes(world_size):
    one = global_batches(96, 16, 1, epoch=3)
    assert global_batches(96, 16, world_size, epoch=3) == one
    assert sorted(flat(one)) == list(range(96))
    assert global_batches(96, 16, 1, epoch=4) != one  # set_epoch reshuffles


def test_padding_falls_only_into_the_last_short_batch_which_drop_last_drops():
    one = global_batches(99, 16, 1, epoch=1)  # 6 full batches and one of 3
    four = global_batches(99, 16, 4, epoch=1)  # 99 padded to 100 over 4 processes
    assert four[:-1] == one[:-1]
    assert len(four[-1]) == 4 and set(one[-1]) < set(four[-1])
    dropped = global_batches(99, 16, 4, epoch=1, drop_last=True)
    assert dropped == global_batches(99, 16, 1, epoch=1, drop_last=True) == one[:-1]


def test_make_loader_refuses_a_global_batch_that_does_not_divide_over_the_processes():
    ctx = DistributedContext(rank=0, world_size=3)
    with pytest.raises(ValueError, match="global batch_size 64 does not divide over 3 processes"):
        make_loader(numbered(10), 64, shuffle=True, ctx=ctx)


def test_make_loader_refuses_arguments_that_choose_the_order():
    with pytest.raises(TypeError, match=r"do not pass \['generator'\]"):
        make_loader(numbered(10), 2, shuffle=True, generator=torch.Generator())


def test_make_loader_in_one_process_holds_no_generator_state_for_the_checkpoint():
    loader = make_loader(numbered(10), 4, shuffle=True, seed=3, num_workers=0)
    assert loader.generator is None and loader.batch_size == 4
    loader.sampler.set_epoch(2)
    first = [b.tolist() for (b,) in loader]
    assert [b.tolist() for (b,) in loader] == first  # the order is a function of (seed, epoch)


@pytest.mark.parametrize("n", [0, 1, 5, 7, 12])
@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_eval_shards_hold_every_sample_exactly_once_without_padding(n, world_size):
    shards = [list(ShardSampler(range(n), rank, world_size)) for rank in range(world_size)]
    assert sorted(flat(shards)) == list(range(n))
    assert [len(ShardSampler(range(n), r, world_size)) for r in range(world_size)] == [
        len(s) for s in shards
    ]


def test_eval_loader_batches_are_the_global_batch_divided_by_the_processes():
    loaders = [
        make_eval_loader(numbered(7), 4, ctx=DistributedContext(rank=r, world_size=2))
        for r in range(2)
    ]
    assert [[b.tolist() for (b,) in loader] for loader in loaders] == [
        [[0, 2], [4, 6]],
        [[1, 3], [5]],
    ]


def test_eval_loader_rounds_the_per_process_batch_up_instead_of_refusing():
    loader = make_eval_loader(numbered(10), 1000, ctx=DistributedContext(rank=2, world_size=3))
    assert loader.batch_size == 334


def test_shard_sampler_refuses_a_rank_outside_the_world():
    with pytest.raises(ValueError, match=r"rank must be in \[0, 2\), got 2"):
        ShardSampler(range(4), rank=2, world_size=2)


def test_without_torchrun_the_context_is_a_single_process(no_torchrun):
    threads = torch.get_num_threads()
    with init_distributed("cpu") as ctx:
        assert (ctx.rank, ctx.world_size, ctx.distributed, ctx.is_main) == (0, 1, False, True)
        assert ctx.device == torch.device("cpu")
    assert torch.get_num_threads() == threads  # a single process keeps torch's default


def test_world_size_one_under_torchrun_is_a_single_process(no_torchrun):
    no_torchrun.setenv("WORLD_SIZE", "1")
    no_torchrun.setenv("RANK", "0")
    ctx = init_distributed("cpu")
    assert not ctx.distributed
    model = nn.Linear(2, 2)
    assert wrap_model(model, ctx) is model


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE must be an integer, got 'two'"),
        ({"WORLD_SIZE": "2"}, "RANK is not set; launch with torchrun"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, r"RANK must be in \[0, 2\) for WORLD_SIZE=2, got 2"),
        (
            {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "1"},
            r"LOCAL_RANK must be in \[0, 1\) for LOCAL_WORLD_SIZE=1, got 1",
        ),
        ({"WORLD_SIZE": "2", "RANK": "1"}, "MASTER_ADDR is not set; launch with torchrun"),
    ],
)
def test_init_distributed_names_the_bad_environment_variable(no_torchrun, variables, message):
    for name, value in variables.items():
        no_torchrun.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        init_distributed("cpu")


def test_init_distributed_refuses_zero_threads(no_torchrun):
    with pytest.raises(ValueError, match="threads must be at least 1, got 0"):
        init_distributed("cpu", threads=0)


def test_a_process_group_made_elsewhere_is_adopted_and_left_up(no_torchrun, tmp_path):
    store = f"file://{tmp_path / 'store'}"
    dist.init_process_group("gloo", init_method=store, rank=0, world_size=1)
    try:
        with init_distributed("cpu") as ctx:
            assert (ctx.backend, ctx.world_size, ctx.owns_group) == ("gloo", 1, False)
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()
