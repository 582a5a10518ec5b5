"""plot-ray: Ray-distributed preference fine-tuning of LLMs with PLOT."""

__version__ = "0.1.0"
