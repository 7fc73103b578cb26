"""Sentence embeddings: a pretrained encoder served at `POST /v1/models/{name}/embed`, judged on text pairs."""
