"""Audio: WAV I/O, μ-law companding, spectrogram features (shared by the speech models, tasks and data builders)."""
