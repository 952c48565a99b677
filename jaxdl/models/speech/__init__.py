"""Speech models: registry keys = module names — `deepspeech` (DeepSpeech2-style CTC recognizer: log-mel →
2-D convs → BiGRU/BiLSTM → characters), `conformer` (the same front end → Conformer blocks → characters),
`wavenet`. `_front_end` holds the front end the two recognizers share."""
