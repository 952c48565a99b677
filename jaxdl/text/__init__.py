"""Text utilities: tokenizers (`tokenizer` and others) and the n-gram language-model baseline (`ngram`)."""
