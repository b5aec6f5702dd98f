"""noisybox-bench: how object detectors behave when their training boxes are wrong."""

__version__ = "0.1.0"
