"""The paper's architectures, and a pretrained emotion CNN to distil from."""

from .mini_xception import FerInput, MiniXception, fer_teacher, mini_xception_from_fer
from .squeezenet import cp_decompose_squeezenet, squeezenet1_1
from .vgg_s import vgg_s

__all__ = ["FerInput", "MiniXception", "cp_decompose_squeezenet", "fer_teacher",
           "mini_xception_from_fer", "squeezenet1_1", "vgg_s"]
