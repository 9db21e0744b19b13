"""Gradual unfreezing from the top: head, then each encoder layer downwards, then embeddings (and the encoder
variables every layer reads)."""
from __future__ import annotations

import math
import re

_LAYER = re.compile(r"/layer_\._(\d+)/")


def unfreezing_groups(model, frozen=()) -> list[list]:
    """Trainable variables of a HF TF task model grouped top-down: [head, layer L-1, ..., layer 0, embeddings].

    Encoder variables outside the layers (MPNet's relative position bias) go with the embeddings: every layer
    reads them, so they unfreeze last. Variables in `frozen` (e.g. a frozen word-embedding matrix) are left out
    of every group.
    """
    frozen_ids = {id(v) for v in frozen}
    head, embeddings, layers = [], [], {}
    for var in model.trainable_variables:
        if id(var) in frozen_ids:
            continue
        match = _LAYER.search(var.name)
        if match:
            layers.setdefault(int(match.group(1)), []).append(var)
        elif "/embeddings/" in var.name or "/encoder/" in var.name:
            embeddings.append(var)
        else:
            head.append(var)  # classifier, pooler, pre-classifier dense
    groups = [head] + [layers[i] for i in sorted(layers, reverse=True)] + [embeddings]
    return [g for g in groups if g]


def unfreeze_interval(total_steps: int, num_groups: int, unfreeze_fraction: float) -> int:
    """Steps between two unfreezing events so that every group is trainable after the fraction."""
    if num_groups <= 1 or unfreeze_fraction <= 0:
        return 0
    return max(1, math.ceil(unfreeze_fraction * total_steps / (num_groups - 1)))


def num_unfrozen_groups(step: int, num_groups: int, interval: int) -> int:
    """How many top groups are trainable at `step` (0-based): one more every `interval` steps."""
    if interval <= 0:
        return num_groups
    return min(num_groups, 1 + step // interval)
