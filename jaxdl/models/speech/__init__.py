"""Speech models: registry keys = module names — `deepspeech` (DeepSpeech2-style CTC recognizer: log-mel →
2-D convs → BiGRU/BiLSTM → characters), `wavenet`."""
