"""The batched data path: a batch of in-memory images is one index into the uint8 tensor, and
it yields exactly the tensors the per-sample path (`__getitem__` + default_collate) would, in
the same order, for training (any number of processes, any epoch) and for evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, Subset

from rnnlab.data.batched import Batch, collate
from rnnlab.data.mnist import RowBatches, RowImages
from rnnlab.train import DistributedContext, make_eval_loader, make_loader


class PerSample(Dataset):
    """The same data seen only through `__getitem__`: torch's per-sample path."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset[index]


def images(n: int = 37) -> RowBatches:
    generator = np.random.default_rng(0)
    pixels = generator.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)  # (N, 28, 28)
    return RowBatches(pixels, generator.integers(0, 10, size=n))


def batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x, y) for x, y in loader]


def assert_same(one, other) -> None:
    assert len(one) == len(other)
    for (x, y), (x2, y2) in zip(one, other, strict=True):
        assert x.dtype == x2.dtype == torch.float32 and y.dtype == y2.dtype == torch.int64
        assert torch.equal(x, x2) and torch.equal(y, y2)


@pytest.mark.parametrize("world_size", [1, 2])
@pytest.mark.parametrize("epoch", [1, 4])
def test_training_batches_equal_the_per_sample_path_on_every_rank(world_size, epoch):
    data = Subset(images(), range(3, 35))
    for rank in range(world_size):
        ctx = DistributedContext(rank=rank, world_size=world_size)
        fast = make_loader(data, 8, shuffle=True, seed=5, ctx=ctx, collate_fn=collate)
        slow = make_loader(PerSample(data), 8, shuffle=True, seed=5, ctx=ctx)
        fast.sampler.set_epoch(epoch)
        slow.sampler.set_epoch(epoch)
        assert_same(batches(fast), batches(slow))


def test_evaluation_batches_equal_the_per_sample_path():
    data = images()
    fast = make_eval_loader(data, 10, collate_fn=collate)
    assert_same(batches(fast), batches(make_eval_loader(PerSample(data), 10)))


def test_a_batch_is_one_index_not_a_sample_at_a_time(monkeypatch):
    data = Subset(images(), range(20))

    def refuse(self, index):
        raise AssertionError("per-sample __getitem__ called while loading batches")

    monkeypatch.setattr(RowImages, "__getitem__", refuse)
    x, y = next(iter(make_loader(data, 16, shuffle=True, collate_fn=collate)))
    assert x.shape == (16, 28, 28) and y.shape == (16,)  # (B, 28, 28), (B,)


def test_plain_row_images_still_work_with_torchs_default_collate():
    plain = RowImages(images().images.numpy(), images().labels.numpy())
    x, y = next(iter(torch.utils.data.DataLoader(plain, batch_size=4)))
    assert x.shape == (4, 28, 28) and y.shape == (4,)


def test_collate_passes_a_batch_through_and_stacks_a_list_of_samples():
    x, y = torch.zeros(2, 3), torch.arange(2)
    assert collate(Batch((x, y)))[0] is x
    stacked, labels = collate([(x[0], y[0]), (x[1], y[1])])
    assert torch.equal(stacked, x) and torch.equal(labels, y)
