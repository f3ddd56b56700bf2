"""edgegen: export, quantize and run image generators on edge engines."""
__version__ = "0.1.0"
