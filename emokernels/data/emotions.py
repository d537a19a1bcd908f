"""Emotion label sets of the datasets."""

# RaFD's eight emotions in alphabetical order: the class order of every RaFD-like dataset here.
RAFD_CLASSES = ("angry", "contemptuous", "disgusted", "fearful", "happy", "neutral", "sad",
                "surprised")

# FER2013's label ids 0..6.
FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
