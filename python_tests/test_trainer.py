import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from emokernels.experiments import TrainConfig, evaluate, train

from .ddp_run import run, tiny_data, tiny_model


def test_training_lowers_the_loss():
    model = tiny_model()
    result = train(model, tiny_data(), tiny_data(),
                   TrainConfig(epochs=6, lr=0.05, batch_size=16, progress=False))
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.history[-1]["val_accuracy"] == evaluate(model, tiny_data())


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_matches_an_uninterrupted_run(tmp_path, optimizer):
    checkpoint = str(tmp_path / "ckpt.safetensors")
    straight = run(epochs=4, optimizer=optimizer)
    run(epochs=2, checkpoint=checkpoint, optimizer=optimizer)  # "interrupted" after 2 epochs
    resumed_model = tiny_model()
    result = train(resumed_model, tiny_data(), None,
                   TrainConfig(epochs=4, lr=0.05 if optimizer == "sgd" else 0.01,
                               batch_size=16, progress=False, checkpoint=checkpoint,
                               optimizer=optimizer))
    assert result.resumed_from_epoch == 2 and len(result.history) == 4
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed_model.state_dict()[key], value)


def test_refuses_a_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(1)}, path)
    with pytest.raises(ValueError, match="not a training checkpoint"):
        train(tiny_model(), tiny_data(), None,
              TrainConfig(epochs=1, progress=False, checkpoint=str(path)))


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="sgd or adam"):
        train(tiny_model(), tiny_data(), None, TrainConfig(epochs=1, optimizer="lion"))


def test_two_process_ddp_equals_single_process(tmp_path):
    out = tmp_path / "ddp.safetensors"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with socket.socket() as probe:  # a free loopback port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(port),
           os.path.join(os.path.dirname(__file__), "ddp_run.py"), str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    assert done.returncode == 0, done.stderr[-3000:]
    single = run(epochs=3)
    ddp = load_file(out)
    for key, value in single.state_dict().items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-4, atol=1e-5)
