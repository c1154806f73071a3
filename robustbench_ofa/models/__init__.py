"""OFA model, configuration, checkpoint loading and decoding."""

from robustbench_ofa.models.config import SIZE_PRESETS, OFAConfig
from robustbench_ofa.models.modeling import OFAEncoderOutput, OFAModel

__all__ = ["SIZE_PRESETS", "OFAConfig", "OFAEncoderOutput", "OFAModel"]
