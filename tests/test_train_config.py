"""TrainConfig: its defaults are documented, bad choices are refused with the valid ones named."""

import dataclasses
import inspect

import pytest
import torch

from rnnlab.train import OPTIMIZERS, SCHEDULES, TrainConfig
from rnnlab.train.loop import make_optimizer


def test_every_field_has_help_or_a_trailing_comment():
    source = inspect.getsource(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        if field.metadata.get("help"):
            continue  # an option: its help is the command line's
        line = next(s for s in source.splitlines() if s.strip().startswith(f"{field.name}:"))
        assert "  # " in line, f"TrainConfig.{field.name} has no trailing comment: {line!r}"


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("optimizer", "rmsprop", ", ".join(OPTIMIZERS)),
        ("schedule", "step", ", ".join(SCHEDULES)),
        ("device", "tpu", "'auto', 'cpu', 'cuda' or 'cuda:N'"),
        ("epochs", 0, ">= 1"),
        ("momentum", float("nan"), "finite"),
        ("grad_clip", float("nan"), "finite"),
        ("seed", 10**20, "<="),
        ("seed", -1, ">= 0"),
        ("lr", 0.0, "positive"),
        ("grad_clip", -1.0, ">= 0"),
        ("name", "a/b", "plain folder name"),
    ],
)
def test_bad_setting_raises_value_error_naming_value_and_valid_choices(field, value, expected):
    with pytest.raises(ValueError) as info:
        TrainConfig(**{field: value})
    assert repr(value) in str(info.value) or str(value) in str(info.value)
    assert expected in str(info.value)


def test_config_round_trips_through_a_dict_and_rejects_unknown_fields():
    config = TrainConfig(name="x", optimizer="sgd", schedule="cosine", grad_clip=0.5)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown TrainConfig fields \\['learning_rate'\\]"):
        TrainConfig.from_dict({"learning_rate": 0.1})


@pytest.mark.parametrize(
    ("name", "cls"),
    [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)],
)
def test_optimizer_gets_the_configured_rate_and_weight_decay(name, cls):
    config = TrainConfig(optimizer=name, lr=0.05, weight_decay=0.01, momentum=0.5)
    optimizer = make_optimizer(torch.nn.Linear(2, 2), config)
    group = optimizer.param_groups[0]
    assert type(optimizer) is cls
    assert (group["lr"], group["weight_decay"]) == (0.05, 0.01)
    if name == "sgd":
        assert group["momentum"] == 0.5


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_the_fused_optimizer_steps_as_torchs_loop_does(name):
    """make_optimizer runs torch's fused kernel on CPU; its updates are the loop's equations,
    equal up to the order of rounding."""
    config = TrainConfig(optimizer=name, lr=0.01, weight_decay=0.1, momentum=0.9)
    torch.manual_seed(0)
    fused_model, loop_model = torch.nn.Linear(30, 20), torch.nn.Linear(30, 20)
    loop_model.load_state_dict(fused_model.state_dict())
    start = [p.detach().clone() for p in fused_model.parameters()]
    fused = make_optimizer(fused_model, config)
    assert fused.param_groups[0]["fused"] is True
    options = {"lr": 0.01, "weight_decay": 0.1} | ({"momentum": 0.9} if name == "sgd" else {})
    loop = type(fused)(loop_model.parameters(), **options)
    assert loop.param_groups[0]["fused"] is None
    for _ in range(5):
        x = torch.randn(8, 30)  # (B, in)
        for model, optimizer in ((fused_model, fused), (loop_model, loop)):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
    for a, b, a0 in zip(fused_model.parameters(), loop_model.parameters(), start, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        assert (a != a0).all()  # every weight moved


def test_a_model_with_sparse_gradients_or_off_cpu_and_cuda_gets_torchs_loop():
    config = TrainConfig(optimizer="sgd", momentum=0.9)
    sparse = torch.nn.Embedding(5, 3, sparse=True)
    assert make_optimizer(sparse, config).param_groups[0]["fused"] is None
    meta = torch.nn.Linear(2, 2, device="meta")
    assert make_optimizer(meta, config).param_groups[0]["fused"] is None
    assert make_optimizer(torch.nn.Linear(2, 2), config).param_groups[0]["fused"] is True


def test_label_smoothing_must_leave_the_target_some_weight():
    with pytest.raises(ValueError, match=r"label_smoothing must be < 1, got 1\.0"):
        TrainConfig(label_smoothing=1.0)
