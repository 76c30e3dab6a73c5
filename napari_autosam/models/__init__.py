"""Model code: the prompt generator g, the surrogate decoder h, and their backbones.

Pure PyTorch; nothing here imports napari or Qt.
"""

from .hardnet import HARDNET85, HARDNET_SMALL, HarDNet, HarDNetSpec, load_pretrained_backbone
from .prompt_generator import PROMPT_GENERATORS, PromptGenerator, build_prompt_generator
from .surrogate import LayerNorm2d, SurrogateDecoder

__all__ = [
    "HARDNET85",
    "HARDNET_SMALL",
    "PROMPT_GENERATORS",
    "HarDNet",
    "HarDNetSpec",
    "LayerNorm2d",
    "PromptGenerator",
    "SurrogateDecoder",
    "build_prompt_generator",
    "load_pretrained_backbone",
]
