"""Offline training, calibration and evaluation for ecgwatch models (imports ``ecgwatch``, never the reverse)."""
