"""Per-device detection: what the daemon and training do with one device's continuous ECG, in time order.

One module a concern, shared by training and the daemon so a beat is found, judged and counted the same
way offline and in service: ``segmentation`` (R peaks and beat windows, strip by strip), ``quality`` (what
can be read), ``templates`` (the device's beat morphologies), ``rhythm`` (R-R history and atrial
fibrillation), ``features`` and ``classifier`` (each beat's AAMI class), ``adaptation`` (the autoencoder's
per-device terms), ``device`` (all of it for one device) and ``episodes`` (what a person on call sees).
"""
