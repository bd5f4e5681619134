from __future__ import annotations

import pytest
import torch

from ecgwatch.models import RecurrentAEConfig, RecurrentAutoencoder, resolve_device


@pytest.mark.parametrize(("batch", "seq_len", "e"), [(1, 140, 8), (5, 140, 16), (3, 37, 4)])
def test_shapes(batch: int, seq_len: int, e: int) -> None:
    model = RecurrentAutoencoder(RecurrentAEConfig(seq_len=seq_len, embedding_dim=e))
    x = torch.randn(batch, seq_len, 1)
    assert model.encode(x).shape == (batch, e)
    assert model(x).shape == (batch, seq_len, 1)


def test_seed_layer_sizes() -> None:
    model = RecurrentAutoencoder(RecurrentAEConfig(embedding_dim=128))
    assert (model.enc1.input_size, model.enc1.hidden_size) == (1, 256)
    assert (model.enc2.input_size, model.enc2.hidden_size) == (256, 128)
    assert (model.dec1.input_size, model.dec1.hidden_size) == (128, 128)
    assert (model.dec2.input_size, model.dec2.hidden_size) == (128, 256)
    assert (model.out.in_features, model.out.out_features) == (256, 1)


def test_batch_items_are_independent() -> None:
    model = RecurrentAutoencoder(RecurrentAEConfig(embedding_dim=8)).eval()
    x = torch.randn(4, 140, 1)
    with torch.inference_mode():
        torch.testing.assert_close(model(x)[2:3], model(x[2:3]), rtol=1e-5, atol=1e-6)


def test_rejects_unbatched_input() -> None:
    model = RecurrentAutoencoder(RecurrentAEConfig(embedding_dim=8))
    with pytest.raises(ValueError, match=r"expected beats of shape \(B, T, 1\)"):
        model(torch.randn(140, 1))


def test_device_choice() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            resolve_device("cuda")
