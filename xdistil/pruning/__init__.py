"""Structured pruning of a distilled student: attention heads, feed-forward neurons, whole layers, word pieces,
and the rank of its word embeddings.

    targets.py     the --prune_* settings (PruningConfig)
    plan.py        PruningPlan: what each kept layer keeps, chosen from importance scores; pruning.json
    importance.py  head and neuron importance (accumulated |d loss / d mask|, Michel et al. 2019)
    masks.py       the TensorFlow side: layers dropped for real, pruned heads and neurons held at zero
    embedding_rank.py  word embeddings factorised to a low rank (SVD), and their factors read back
    recovery.py    the transfer data with the teacher's logits for the recovery distillation

The student stays a plain HF TF model directory (pruned units are zero weights; `model/pruning.json`
says which); the ONNX export removes them physically (`xdistil.export.structured_pruning`) and looks the words
up in the factors of low-rank embeddings (`xdistil.export.embedding_factors`).
"""
