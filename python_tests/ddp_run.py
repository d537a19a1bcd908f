"""Trains the tiny model of test_trainer.py; run directly or under torchrun."""

import sys

import torch
from safetensors.torch import save_file
from torch import nn

from emokernels.experiments import TrainConfig, init_distributed_from_env, train


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(32, 4))


def tiny_data() -> torch.utils.data.TensorDataset:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 3, 12, 12, generator=g)
    return torch.utils.data.TensorDataset(x, (x.mean((1, 2, 3)) * 40).long() % 4)


def run(epochs: int, checkpoint: str | None = None, optimizer: str = "sgd") -> nn.Module:
    model = tiny_model()
    config = TrainConfig(epochs=epochs, lr=0.05 if optimizer == "sgd" else 0.01,
                         batch_size=16, progress=False, checkpoint=checkpoint,
                         optimizer=optimizer)
    train(model, tiny_data(), None, config)
    return model


if __name__ == "__main__":
    torch.set_num_threads(1)
    init_distributed_from_env("cpu")
    model = run(epochs=3)
    if torch.distributed.get_rank() == 0:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, sys.argv[1])
    # Both ranks tear down together: a rank destroying the gloo group while its peer still
    # holds the connection was seen to abort now and then ("terminate called without an
    # active exception" in CI, about 1 run in 20).
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
