"""The paper's Table 2 figures (Rassadin & Savchenko, 2017), for side-by-side reports."""

# method -> (accuracy %, what the paper measured about its cost)
PAPER_TABLE2 = {
    "vgg_s": (97.13, "~374 MB weights (474 MB file)"),
    "hashed": (96.31, "81.64% fewer weights; training 6.7x, inference 4.7x slower"),
    "hashed_block16": (None, "not in the paper: block hashing (one hash per 16 columns)"),
    "bwn": (98.57, "no memory or speed gain (float simulation)"),
    "xnor": (58.81, "did not converge; 2.4% less inference memory"),
    "binary_activations": (88.32, "slight epoch-time speedup"),
    "squeezenet": (89.14, "baseline of the CP experiment"),
    "cp_squeezenet": (87.5, "23.5% fewer weights; inference 1.5x slower"),
}

# The paper's distillation (section 4, Table 3): SqueezeNet-1.1 students on 13,813 unlabelled
# PubFig83 faces, tested on all of RaFD. Teacher key -> the teacher's accuracy and the
# students' on its labels only / its softmax outputs (%). Our "vgg_s" teacher (trained on the
# labelled data) stands for their RaFD-trained VGG-S; "fer" (pretrained on other data, in the
# wild) for their EmotiW VGG-S.
PAPER_TABLE3 = {
    "vgg_s": {"title": "VGG-S trained on RaFD", "teacher": 81.0, "labels": 41.0,
              "softmax": 47.0},
    "fer": {"title": "VGG-S pretrained on EmotiW", "teacher": 41.45, "labels": 12.3,
            "softmax": 23.8},
}
