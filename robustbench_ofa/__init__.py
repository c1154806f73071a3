"""robust-ofa: adversarial-robustness benchmark for OFA and its parameter-efficient tuning methods."""

__version__ = "0.1.0"
