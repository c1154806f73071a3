"""OFA model, configuration, checkpoint loading and decoding."""

# ``loading`` attaches OFAModel.from_pretrained / save_pretrained: strict loading imports the model
# module, never the other way round, and importing it here gives every OFAModel those methods.
from robustbench_ofa.models import loading as _loading  # noqa: F401
from robustbench_ofa.models.config import SIZE_PRESETS, OFAConfig
from robustbench_ofa.models.modeling import OFAEncoderOutput, OFAModel

__all__ = ["SIZE_PRESETS", "OFAConfig", "OFAEncoderOutput", "OFAModel"]
