"""Data: the generated benchmark, real-data loaders (OFA TSVs, JSONL manifests) and OFA's image pipeline."""

from robustbench_ofa.data.types import Sample

__all__ = ["Sample"]
