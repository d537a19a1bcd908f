import torch
from torch import nn

import emokernels as ek


def test_compiled_frozen_model_matches_eager():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(32 * 4 * 4, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 5),
    )
    ek.convert(model, "xnor")
    ek.convert(model, "bwn", filter_fn=lambda name, m: name == "11")
    ek.freeze(model)
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), expected)
