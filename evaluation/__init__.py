"""Objective evaluation of converted singing: F0 accuracy (FPC, RMSE in cents, V/UV error), mel
cepstral distortion, speaker similarity (Resemblyzer) and character error rate (Whisper), with a
TSV/table report. The command-line front end is ``bins/calc_metrics.py`` (``cantor eval``)."""
