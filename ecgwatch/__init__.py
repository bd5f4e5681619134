"""ecgwatch: streaming ECG anomaly detection with an LSTM autoencoder."""

__version__ = "0.1.0"
