"""Keeping evaluation texts out of unlabeled transfer data.

A transfer text that repeats a dev or test text (or contains one, or is contained in one) lets the student copy
the teacher's answer for that very text: the score it reaches then says less about unseen text. `OverlapFilter`
drops such texts, with the rule the shared task folders were built with: two texts are the same when their keys
(lowercased letters and digits, nothing else) are equal, and near the same when a key of at least
`min_near_chars` characters lies inside the other's key. Texts already in the folder (train, transfer) are
dropped as exact duplicates, and so is the second of two equal candidates. `repeats_of` finds the transfer
examples of a run that equal a dev or test example (the run's preflight warns of them).
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field

from xdistil.data.readers import NerExample


def text_key(text: str) -> str:
    """The lowercased letters and digits of `text`: what is left when case, spacing and punctuation go."""
    return "".join(c for c in text.lower() if c.isalnum())


def example_key(example) -> str:
    """The key of a task example: of its words (NER), or of its text or two texts; labels play no part."""
    if isinstance(example, NerExample):
        return text_key("".join(example.tokens))
    return text_key(example.text_a) + "\t" + text_key(example.text_b or "")


def repeats_of(eval_examples: Iterable, examples: Iterable) -> list:
    """The `examples` whose key equals that of one of `eval_examples`, in their order."""
    eval_keys = {example_key(e) for e in eval_examples}
    return [example for example in examples if example_key(example) in eval_keys]


@dataclass
class OverlapCounts:
    """Why candidate texts were dropped, and how many were kept."""
    kept: int = 0
    empty: int = 0
    duplicate: int = 0
    near_eval: int = 0

    def summary(self) -> str:
        return (f"{self.kept} kept; dropped {self.duplicate} equal to a text already there or an earlier candidate, "
                f"{self.near_eval} near a dev/test text, {self.empty} with no letter or digit")


@dataclass
class OverlapFilter:
    """Drops candidates that equal a known text or nearly repeat an evaluation text (module docstring)."""
    eval_texts: Iterable[str]
    known_texts: Iterable[str] = ()
    min_near_chars: int = 20
    counts: OverlapCounts = field(default_factory=OverlapCounts)

    def __post_init__(self):
        self._eval_keys = [k for k in map(text_key, self.eval_texts) if k]
        self._seen = set(self._eval_keys) | {k for k in map(text_key, self.known_texts) if k}
        # One string to search for a candidate's key inside any evaluation key; "\n" never occurs in a key.
        self._eval_joined = "\n".join(self._eval_keys)
        self._long_eval_keys = [k for k in self._eval_keys if len(k) >= self.min_near_chars]

    def keep(self, candidates: Iterable[str]) -> list[str]:
        """The candidates to keep, in their order; `counts` adds up what was dropped and why."""
        kept, kept_keys = [], []
        for text in candidates:
            key = text_key(text)
            if not key:
                self.counts.empty += 1
            elif key in self._seen:
                self.counts.duplicate += 1
            elif len(key) >= self.min_near_chars and key in self._eval_joined:
                self.counts.near_eval += 1
            else:
                self._seen.add(key)
                kept.append(text)
                kept_keys.append(key)
        containing = self._containing_eval_key(kept_keys)
        self.counts.near_eval += len(containing)
        kept = [text for i, text in enumerate(kept) if i not in containing]
        self.counts.kept += len(kept)
        return kept

    def _containing_eval_key(self, keys: list[str]) -> set[int]:
        """Indexes of the `keys` that contain a long evaluation key."""
        joined = "\n".join(keys)
        starts, total = [], 0
        for key in keys:
            starts.append(total)
            total += len(key) + 1
        found = set()
        for eval_key in self._long_eval_keys:
            at = joined.find(eval_key)
            while at >= 0:
                found.add(_index_at(starts, at))
                at = joined.find(eval_key, at + 1)
        return found


def _index_at(starts: list[int], position: int) -> int:
    """The index of the key that `position` of the joined keys falls in (`starts`: each key's first position)."""
    return bisect_right(starts, position) - 1
