"""The --prune_* settings of run_finetune.py: what to remove, how to rank it, how to recover."""
from __future__ import annotations

import dataclasses

from xdistil.config import LAYER_ORDER, Section, ordered_layers, setting
from xdistil.errors import ConfigError

HEAD_SCOPES = ("per_layer", "total")
IMPORTANCE_DATA = ("transfer", "train")


@dataclasses.dataclass(frozen=True)
class PruningConfig(Section):
    """Structured pruning of the student before fine-tuning (off unless a target is given)."""

    prune_heads: int = setting(0, "Attention heads to remove, the least important first: in each layer "
                                  "(--prune_heads_scope per_layer) or in all layers together (total). Every layer "
                                  "keeps at least one head.", minimum=0)
    prune_heads_scope: str = setting("per_layer", "--prune_heads counts per layer or in total (ranked across "
                                                  "layers by importance normalised per layer).", choices=HEAD_SCOPES)
    prune_ffn_fraction: float = setting(0.0, "Share of each layer's feed-forward neurons to remove, the least "
                                             "important first.", minimum=0.0, below=1.0)
    drop_layers: tuple[int, ...] | None = setting(None, "Student layers to remove, 0-based: 1,2 (before the heads "
                                                        "and neurons are ranked).")
    prune_vocabulary_min_count: int = setting(0, "Drop the student's word pieces seen fewer than N times in the train "
                                                 "text and its run's transfer text, with their embedding rows (0: keep "
                                                 "all). Single-character pieces stay, so a word whose piece went is "
                                                 "segmented into smaller pieces, not the unknown token.", minimum=0)
    word_embedding_rank: int = setting(0, "Factorise the student's word embeddings to this rank (their SVD): "
                                          "vocabulary x rank + rank x hidden parameters instead of vocabulary x "
                                          "hidden, every word piece kept. They stay frozen from then on (0: as "
                                          "they are).", minimum=0)
    source_transfer_file: str | None = setting(
        None, "The transfer files of --model_dir's run where they are now, when they moved since it ran "
              "(comma-separated, in its order; each must hold what the run read). Default: where the run recorded "
              "them.")
    importance_data: str = setting("transfer", "Rank heads and neurons by the loss against the teacher's logits on "
                                               "the run's transfer data (no labels), or by cross-entropy on train.",
                                   choices=IMPORTANCE_DATA)
    importance_examples: int = setting(1024, "Examples the importance is accumulated over.", minimum=1)
    recovery_logit_epochs: int = setting(1, "Recovery: epochs of logit distillation against the teacher's logits on "
                                            "the transfer data, before fine-tuning (0: fine-tuning only).", minimum=0)
    recovery_learning_rate: float = setting(1e-4, "Recovery: peak learning rate of the logit distillation.",
                                            above=0.0)
    recovery_hidden_weight: float = setting(0.0, "Recovery: add this weight times the hidden-state MSE of each kept "
                                                 "layer against the student as it was before pruning (same width, "
                                                 "no projection) to the logit loss (0: logits only).", minimum=0.0)

    @property
    def prunes_units(self) -> bool:
        """Whether heads, neurons or layers go (ranked by importance)."""
        return bool(self.prune_heads or self.prune_ffn_fraction or self.drop_layers)

    @property
    def active(self) -> bool:
        return self.prunes_units or bool(self.prune_vocabulary_min_count or self.word_embedding_rank)

    @property
    def needs_teacher_logits(self) -> bool:
        """Whether the teacher's logits of the transfer data are read: for recovery, or to rank units on them."""
        return self.active and bool(self.recovery_logit_epochs or
                                    (self.prunes_units and self.importance_data == "transfer"))

    @property
    def teacher_logits_setting(self) -> str:
        """The setting that makes pruning read the teacher's logits (see `needs_teacher_logits`), for an error."""
        return "recovery_logit_epochs" if self.recovery_logit_epochs else "importance_data"

    def check(self):
        if self.recovery_hidden_weight and self.prune_vocabulary_min_count:
            raise ConfigError("recovery_hidden_weight", "compares hidden states token by token with the student "
                                                        "before pruning, which a pruned vocabulary segments "
                                                        "differently: give one of --recovery_hidden_weight and "
                                                        "--prune_vocabulary_min_count")
        if self.recovery_hidden_weight and not self.recovery_logit_epochs:
            raise ConfigError("recovery_hidden_weight", "weighs a recovery loss: give --recovery_logit_epochs too")
        layers = self.drop_layers
        if layers and not ordered_layers(layers, stacked=False):
            raise ConfigError("drop_layers", f"needs {LAYER_ORDER[False]} >= 0, got {','.join(map(str, layers))}")
