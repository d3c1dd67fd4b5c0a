"""Study: nDCG@10 of each export precision (PyTorch, ONNX fp32/fp16/int8) on TREC DL 2019."""
