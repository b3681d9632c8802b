"""RustSEG Edge, the device side: no TensorFlow import anywhere in this package."""

__version__ = "0.1.0"
