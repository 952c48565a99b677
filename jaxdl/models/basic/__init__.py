"""Small models of the MNIST-1D paper (Greydanus 2020) and other vector/sequence classifiers: `logistic`, `mlp`,
`cnn1d` (1-D convolutions, optional norms), `gru` (bidirectional GRU). Registry keys = module names."""
