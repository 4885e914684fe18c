"""Export: ONNX graphs (onnx.py) and the checkpoint-copying helpers the export commands share (files.py)."""
