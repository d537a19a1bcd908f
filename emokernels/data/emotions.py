"""Emotion label sets of the datasets."""

# RaFD's eight emotions in alphabetical order: the class order of every RaFD-like dataset here.
RAFD_CLASSES = ("angry", "contemptuous", "disgusted", "fearful", "happy", "neutral", "sad",
                "surprised")

# FER2013's label ids 0..6.
FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# Every dataset's class name -> the emotion it means (RaFD names adjectives, FER2013 nouns).
_EMOTION = {
    "angry": "anger", "anger": "anger",
    "contemptuous": "contempt", "contempt": "contempt",
    "disgusted": "disgust", "disgust": "disgust",
    "fearful": "fear", "fear": "fear",
    "happy": "happiness", "happiness": "happiness",
    "neutral": "neutral",
    "sad": "sadness", "sadness": "sadness",
    "surprised": "surprise", "surprise": "surprise",
}


def emotion_of(name: str) -> str:
    """The emotion a class name means: ``"disgusted"`` and ``"disgust"`` are ``"disgust"``.
    ValueError for a name that is no known emotion."""
    try:
        return _EMOTION[name.lower()]
    except KeyError:
        raise ValueError(f"{name!r} is not a known emotion class name; known: "
                         f"{sorted(_EMOTION)}") from None


def class_mapping(source: tuple[str, ...], target: tuple[str, ...]) -> tuple[int | None, ...]:
    """For each class of ``target``, the index of the class of ``source`` meaning the same
    emotion, or None where ``source`` has none (FER2013 -> RaFD: contempt has none).

    Raises ValueError if a class name is unknown, if either class set names an emotion twice,
    or if no class is shared.
    """
    emotions = {}
    for which, classes in (("source", source), ("target", target)):
        meant = [emotion_of(c) for c in classes]
        if len(set(meant)) != len(meant):
            raise ValueError(f"the {which} classes {classes} name an emotion twice")
        emotions[which] = meant
    mapping = tuple(emotions["source"].index(e) if e in emotions["source"] else None
                    for e in emotions["target"])
    if all(m is None for m in mapping):
        raise ValueError(f"the classes {source} and {target} share no emotion")
    return mapping
