"""Calibration and quantization: record calibration feeds, quantize (NNCF, ONNX Runtime QDQ),
gate quality with per-layer fallback and gate speed. Runs on engines only (no torch)."""
