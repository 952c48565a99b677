"""Structured prediction and graph models: `bilstm_tagger` (BiLSTM over word + character-BiLSTM features, softmax
or CRF output) and `gnn` (GCN / GAT / GIN node or graph classifier over jaxdl.layers.graph). Registry keys =
module names."""
