"""Which teacher layer each student layer learns from in representation distillation.

Layers are numbered 1..L: the outputs of the transformer blocks, i.e. `hidden_states[i]` of
a HuggingFace model output, where `hidden_states[0]` is the embedding output.
"""

import operator

NAMED_SPECS = ("top", "uniform", "last")


def layer_mapping(spec: str, num_student_layers: int,
                  num_teacher_layers: int) -> list[tuple[int, int]]:
    """Return (student_layer, teacher_layer) pairs for a mapping spec.

    spec:
      "top"      student layer i -> teacher layer T - S + i (the reference XtremeDistil
                 mapping: the student's S layers matched with the teacher's top S layers).
      "uniform"  student layer i -> teacher layer round(i * T / S), halves rounded up, so
                 the last student layer maps to the last teacher layer.
      "last"     only [(S, T)].
      "3,6,9,12" explicit teacher layers for student layers 1..S in order: exactly S
                 strictly increasing integers in 1..T.
    Raises ValueError for an unknown or invalid spec, or when "top"/"uniform" is asked for
    a student deeper than the teacher.
    """
    try:
        s, t = operator.index(num_student_layers), operator.index(num_teacher_layers)
    except TypeError:
        s = t = 0
    if s < 1 or t < 1:
        raise ValueError("layer counts must be positive integers, got "
                         f"student={num_student_layers!r}, teacher={num_teacher_layers!r}")
    name = spec.strip().lower()
    if name == "last":
        return [(s, t)]
    if name in ("top", "uniform"):
        if s > t:
            raise ValueError(f"layer mapping {name!r} needs a student no deeper than the "
                             f"teacher, got {s} student layers and {t} teacher layers; "
                             "give an explicit mapping or use 'last'")
        if name == "top":
            return [(i, t - s + i) for i in range(1, s + 1)]
        # round-half-up of i * t / s in exact integer arithmetic
        return [(i, (2 * i * t + s) // (2 * s)) for i in range(1, s + 1)]
    return list(enumerate(_parse_explicit(spec, s, t), start=1))


def _parse_explicit(spec: str, s: int, t: int) -> list[int]:
    try:
        layers = [int(part) for part in spec.split(",")]
    except ValueError:
        raise ValueError(f"layer mapping {spec!r} is neither one of {NAMED_SPECS} nor a "
                         "comma-separated list of teacher layer numbers") from None
    if len(layers) != s:
        raise ValueError(f"layer mapping {spec!r} lists {len(layers)} teacher layers but the "
                         f"student has {s} layers; give one teacher layer per student layer")
    if any(not 1 <= layer <= t for layer in layers):
        raise ValueError(f"layer mapping {spec!r}: teacher layers must be in 1..{t} "
                         "(1 is the first transformer block, not the embeddings)")
    if any(b <= a for a, b in zip(layers, layers[1:])):
        raise ValueError(f"layer mapping {spec!r}: teacher layers must be strictly increasing")
    return layers


def resolve_auto(spec: str, cut_from) -> str:
    """`spec` with "auto" resolved: the teacher layers a student cut from teacher layers was copied from
    (`cut_from`, 0-based; its own layers start near those), else "top"."""
    if spec.strip().lower() != "auto":
        return spec
    return ",".join(str(layer + 1) for layer in cut_from) if cut_from else "top"
