"""What the families run on, registered nowhere: the MiniLM weights and cache, the tokenizer, the ONNX encoder and its
export, the torch body and the fine-tuning loops, static embeddings, the linear head, the scikit-learn predictor and
TF-IDF features, thread limits. Heavy libraries (torch, onnxruntime) are imported only by the module that needs them."""
