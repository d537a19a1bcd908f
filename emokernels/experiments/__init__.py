"""Training and the paper's experiments."""

from .trainer import TrainConfig, TrainResult, evaluate, init_distributed_from_env, train

__all__ = ["TrainConfig", "TrainResult", "evaluate", "init_distributed_from_env", "train"]
