import pytest
import torch
from torch import nn

from expo_sdk.adapters._state_policy import TimeConditionedMLP
from expo_sdk.nets import mish_


@pytest.mark.parametrize("compiled", [False, True])  # under torch.compile the exp form uses a reciprocal
@pytest.mark.parametrize("shape", [(3, 5), (128, 1024)])  # aten's kernel below 2^13 elements, the exp form above
def test_in_place_mish_matches_nn_mish(shape, compiled):
    x = torch.randn(shape) * 8
    x[0, :4] = torch.tensor([-100.0, 100.0, 0.0, 30.0])
    expected = nn.Mish()(x)
    fn = torch.compile(lambda t: mish_(t.clone()), dynamic=False) if compiled else lambda t: mish_(t.clone())
    torch.testing.assert_close(fn(x), expected, rtol=2e-6, atol=3e-6)


def test_split_inference_forward_matches_forward():
    torch.manual_seed(0)
    net = TimeConditionedMLP(obs_dim=5, chunk_dim=4, hidden_dim=32, num_blocks=2, dropout=0.1,
                             time_embed_dim=8).eval()
    obs, x, t = torch.randn(300, 5), torch.randn(300, 4), torch.full((300,), 7)
    expected = net(obs, x, t)
    got = net.infer(net.condition(obs), x, net.time_features(torch.tensor([7]))[0])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
