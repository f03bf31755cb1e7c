"""torch -> ONNX: export with metadata, verification against torch, FP16/INT8 variants (needs torch)."""
