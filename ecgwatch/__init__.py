"""ecgwatch: streaming ECG anomaly detection with an LSTM autoencoder."""

__version__ = "0.1.0"


def denoise(*args: object, **kwargs: object) -> object:
    """Clean images with an image autoencoder artifact; see :func:`ecgwatch.denoising.denoise`.

    Imported on first use so ``import ecgwatch`` stays light for the daemon's CLI.
    """
    from ecgwatch.denoising import denoise as _denoise

    return _denoise(*args, **kwargs)  # type: ignore[arg-type]
