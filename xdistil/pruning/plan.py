"""PruningPlan: which heads and feed-forward neurons each layer of a pruned student keeps.

Saved as `model/pruning.json` next to the HF weights (so it travels with them and is part of the
export's fingerprint). A pruned head or neuron is a zero in those weights; the ONNX export cuts it
out (`xdistil.export.structured_pruning`). Word embeddings factorised to a low rank stay one matrix of that
rank; the export splits it into its two factors (`xdistil.pruning.embedding_rank`).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from xdistil.errors import ModelDirectoryError
from xdistil.io_utils import atomic_write_text
from xdistil.pruning.embedding_rank import factorised_parameters

PRUNING_FILE = "pruning.json"


@dataclasses.dataclass(frozen=True)
class PruningPlan:
    """What a pruned student keeps, layer by layer (indices into its own layers, heads and neurons).

    `original` is the architecture before pruning ({"num_hidden_layers", "num_attention_heads",
    "intermediate_size", "hidden_size"}); `dropped_layers` are indices into the original layers;
    `importance` holds the scores the choice was made from ({"heads": [[...]], "neurons": [[...]]},
    per kept layer), for the record. `word_embedding` says how the word embeddings were factorised
    ({"rank", "vocab_size", "hidden_size", "energy_kept"}), None when they were not.
    """

    original: dict
    dropped_layers: tuple[int, ...]
    kept_heads: tuple[tuple[int, ...], ...]
    kept_neurons: tuple[tuple[int, ...], ...]
    importance: dict | None = None
    word_embedding: dict | None = None

    @property
    def head_size(self) -> int:
        return self.original["hidden_size"] // self.original["num_attention_heads"]

    @property
    def num_layers(self) -> int:
        return len(self.kept_heads)

    @property
    def prunes_units(self) -> bool:
        """Whether some kept layer lost heads or neurons (else only whole layers went)."""
        return any(len(h) < self.original["num_attention_heads"] for h in self.kept_heads) or any(
            len(n) < self.original["intermediate_size"] for n in self.kept_neurons)

    @classmethod
    def unpruned(cls, config, dropped_layers=()) -> "PruningPlan":
        """Every head and neuron of a HF config's layers (after `dropped_layers` of the original went)."""
        original = {key: int(getattr(config, key)) for key in
                    ("num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_size")}
        layers = original["num_hidden_layers"] - len(dropped_layers)
        return cls(original, tuple(dropped_layers), ((tuple(range(original["num_attention_heads"])),) * layers),
                   ((tuple(range(original["intermediate_size"])),) * layers))

    def to_json(self) -> dict:
        return {"original": self.original, "dropped_layers": list(self.dropped_layers),
                "kept_heads": [list(h) for h in self.kept_heads], "kept_neurons": [list(n) for n in self.kept_neurons],
                "importance": self.importance, "word_embedding": self.word_embedding}

    @classmethod
    def from_json(cls, payload: dict) -> "PruningPlan":
        return cls(dict(payload["original"]), tuple(payload["dropped_layers"]),
                   tuple(tuple(h) for h in payload["kept_heads"]), tuple(tuple(n) for n in payload["kept_neurons"]),
                   payload.get("importance"), payload.get("word_embedding"))

    def write(self, directory) -> Path:
        path = Path(directory) / PRUNING_FILE
        atomic_write_text(path, json.dumps(self.to_json()))
        return path

    @classmethod
    def read(cls, directory) -> "PruningPlan | None":
        """The plan saved in `directory` (a student's model/), or None when it was not pruned."""
        path = Path(directory) / PRUNING_FILE
        if not path.exists():
            return None
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as error:
            raise ModelDirectoryError(path, f"unreadable pruning plan ({type(error).__name__}: {error})") from None

    def multiply_adds_per_token(self, length: int) -> dict:
        """Multiply-adds per token of the encoder layers before and after pruning, for rows of `length` tokens:
        "matmul" (Q/K/V/output projections and the feed-forward) and "attention" (scores and their sum over
        values, which grows with `length`)."""
        hidden, d = self.original["hidden_size"], self.head_size
        before = [(self.original["num_attention_heads"], self.original["intermediate_size"])] * \
            self.original["num_hidden_layers"]
        after = [(len(h), len(n)) for h, n in zip(self.kept_heads, self.kept_neurons)]

        def count(layers):
            matmul = sum(4 * hidden * heads * d + 2 * hidden * neurons for heads, neurons in layers)
            attention = sum(2 * length * heads * d for heads, _ in layers)
            return {"matmul": matmul, "attention": attention, "total": matmul + attention}

        return {"length": length, "before": count(before), "after": count(after)}

    def removed_parameters(self) -> int:
        """Parameters a pruned TF model holds that its export does not: the weights and biases held at zero in
        the kept layers (per pruned head its query, key and value columns and biases and its output-projection
        rows; per pruned neuron its W_1 column and bias and its W_2 row) and what factorising the word
        embeddings saves. A pruned TF model's count_params() less this is what the pruned model really holds."""
        hidden, d = self.original["hidden_size"], self.head_size
        heads = sum(self.original["num_attention_heads"] - len(kept) for kept in self.kept_heads)
        neurons = sum(self.original["intermediate_size"] - len(kept) for kept in self.kept_neurons)
        factorised = factorised_parameters(self.word_embedding["vocab_size"], self.word_embedding["hidden_size"],
                                           self.word_embedding["rank"]) if self.word_embedding else 0
        return heads * (4 * hidden * d + 3 * d) + neurons * (2 * hidden + 1) + factorised

    def summary(self) -> dict:
        """Heads and neurons kept per layer, and the dropped layers."""
        return {"dropped_layers": list(self.dropped_layers), "heads_per_layer": [len(h) for h in self.kept_heads],
                "neurons_per_layer": [len(n) for n in self.kept_neurons], "original": self.original,
                "word_embedding": self.word_embedding}


def _lowest(scores: np.ndarray, count: int, already: set) -> set:
    """The `count` lowest-scoring indices, those in `already` first (ties by index)."""
    order = sorted(range(len(scores)), key=lambda i: (i not in already, scores[i], i))
    return set(order[:count])


def choose_plan(base: PruningPlan, head_scores: np.ndarray, neuron_scores: np.ndarray, prune_heads: int,
                heads_scope: str, ffn_fraction: float) -> PruningPlan:
    """The plan that removes the least important heads and neurons of `base`'s layers.

    `head_scores` [layers, heads] and `neuron_scores` [layers, neurons] rank the units (what `base` already
    pruned goes first). `prune_heads` counts per layer, or (`heads_scope` "total") across layers ranked by
    scores normalised per layer (L2, as Michel et al.); every layer keeps one head and one neuron.
    """
    heads = base.original["num_attention_heads"]
    neurons = base.original["intermediate_size"]
    pruned_heads = [set(range(heads)) - set(kept) for kept in base.kept_heads]
    pruned_neurons = [set(range(neurons)) - set(kept) for kept in base.kept_neurons]
    if heads_scope == "per_layer":
        count = min(heads - 1, prune_heads)
        removed_heads = [_lowest(s, max(count, len(p)), p) for s, p in zip(head_scores, pruned_heads)]
    else:
        normalised = head_scores / np.maximum(np.linalg.norm(head_scores, axis=1, keepdims=True), 1e-30)
        ranked = sorted(((layer, h) for layer in range(len(normalised)) for h in range(heads)),
                        key=lambda lh: (lh[1] not in pruned_heads[lh[0]], normalised[lh], lh))
        removed_heads = [set() for _ in normalised]
        target = max(prune_heads, sum(map(len, pruned_heads)))
        for layer, head in ranked:
            if sum(map(len, removed_heads)) >= target:
                break
            if len(removed_heads[layer]) < heads - 1:
                removed_heads[layer].add(head)
    count = min(neurons - 1, int(round(ffn_fraction * neurons)))
    removed_neurons = [_lowest(s, max(count, len(p)), p) for s, p in zip(neuron_scores, pruned_neurons)]
    return dataclasses.replace(
        base, kept_heads=tuple(tuple(sorted(set(range(heads)) - r)) for r in removed_heads),
        kept_neurons=tuple(tuple(sorted(set(range(neurons)) - r)) for r in removed_neurons),
        importance={"heads": np.asarray(head_scores).tolist(), "neurons": np.asarray(neuron_scores).tolist()})
