"""--prune_vocabulary_min_count: rare pieces and their embedding rows go, characters stay, kept text is unchanged."""
import json
import string

import numpy as np
import pytest

from conftest import copy_model_dir, write_task
from xdistil.config import TrainerConfig
from xdistil.errors import ConfigError
from xdistil.export.student_export import export_student
from xdistil.finetune import FinetuneConfig, run_finetune
from xdistil.inference.predict import TFPredictor
from xdistil.model_dir import ModelDirectory
from xdistil.models.loading import load_tokenizer, word_embedding_variable
from xdistil.pruning.recovery import run_transfer_reader, teacher_transfer
from xdistil.pruning.targets import PruningConfig
from xdistil.pruning.vocabulary import character_piece_ids, prune_vocabulary

LETTERS = list(string.ascii_lowercase)


def _tiny_classifier(tmp_path):
    """A random BERT classifier over a WordPiece vocabulary with whole words, a suffix and both character forms."""
    import tensorflow as tf
    from transformers import BertConfig, BertTokenizerFast, TFBertForSequenceClassification

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "is", "good", "awful", "##ly"] + \
        LETTERS + [f"##{c}" for c in LETTERS]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"), do_lower_case=True)
    tf.keras.utils.set_random_seed(0)
    model = TFBertForSequenceClassification(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                                                       num_attention_heads=2, intermediate_size=32, num_labels=2))
    model(model.dummy_inputs)
    return model, tokenizer


def test_rare_pieces_go_characters_stay_and_kept_text_is_computed_as_before(tmp_path):
    model, tokenizer = _tiny_classifier(tmp_path)
    texts = ["the movie is good"] * 3 + ["the movie is awful"]

    pruned, pruned_tokenizer, report = prune_vocabulary(model, tokenizer, iter(texts), min_count=2)

    vocab = pruned_tokenizer.get_vocab()
    assert "awful" not in vocab and "##ly" not in vocab and {"the", "movie", "is", "good"} <= set(vocab)
    assert set(LETTERS) | {f"##{c}" for c in LETTERS} <= set(vocab)
    # The rare word is spelled out in kept pieces, not made unknown.
    assert pruned_tokenizer.tokenize("the movie is awful") == ["the", "movie", "is", "a", "##w", "##f", "##u", "##l"]
    assert report == {"min_count": 2, "pieces_before": len(tokenizer), "pieces_kept": len(tokenizer) - 2,
                      "resegmented_token_share": 0.0625}  # "awful": 1 of the 16 counted tokens
    assert pruned.config.vocab_size == len(pruned_tokenizer) == word_embedding_variable(pruned).shape[0]
    # Each kept piece keeps its row, and text made of kept pieces gets the same logits.
    old_rows, new_rows = word_embedding_variable(model).numpy(), word_embedding_variable(pruned).numpy()
    np.testing.assert_array_equal(new_rows[vocab["good"]], old_rows[tokenizer.get_vocab()["good"]])
    before = model(tokenizer(["the movie is good"], return_tensors="tf")).logits.numpy()
    after = pruned(pruned_tokenizer(["the movie is good"], return_tensors="tf")).logits.numpy()
    np.testing.assert_allclose(after, before, atol=1e-6)


def test_character_pieces_are_found_in_both_word_marks(tmp_path):
    _, tokenizer = _tiny_classifier(tmp_path)
    names = set(tokenizer.convert_ids_to_tokens(sorted(character_piece_ids(tokenizer))))
    assert names == set(LETTERS) | {f"##{c}" for c in LETTERS}


def test_a_student_with_a_pruned_vocabulary_recovers_from_its_teachers_logits_and_exports(distilled_pairwise_dir,
                                                                                           tmp_path):
    """The pieces the task's text never uses go (the tiny vocabulary has many); recovery learns from the teacher's
    logits of the teacher's own segmentation; the new model directory serves with its smaller tokenizer."""
    from transformers import TFAutoModelForSequenceClassification

    run = copy_model_dir(distilled_pairwise_dir, tmp_path / "run")
    task = write_task(tmp_path / "task", "pairwise", n_train=24, seed=5)
    out = tmp_path / "pruned"
    targets = PruningConfig(prune_vocabulary_min_count=1, prune_heads=1, importance_examples=16,
                            recovery_logit_epochs=1)
    metrics = run_finetune(FinetuneConfig(model_dir=str(run), output_dir=str(out), task=str(task), epochs=1),
                           TrainerConfig(batch_size=8), pruning=targets)

    source, pruned = ModelDirectory.load(run), ModelDirectory.load(out)
    vocabulary = metrics["pruning"]["vocabulary"]
    assert vocabulary["pieces_before"] == len(source.tokenizer) and vocabulary["pieces_kept"] == len(pruned.tokenizer)
    assert len(pruned.tokenizer) < len(source.tokenizer) and "corp" not in pruned.tokenizer.get_vocab()
    config = source.load_tf_model().config
    hidden, d = config.hidden_size, config.hidden_size // config.num_attention_heads
    removed = metrics["pruning"]["parameters"]["before"] - metrics["pruning"]["parameters"]["after"]
    # the dropped rows, and one head in each layer (its Q/K/V columns and biases, its W_o rows)
    assert removed == (len(source.tokenizer) - len(pruned.tokenizer)) * hidden + \
        config.num_hidden_layers * (4 * hidden * d + 3 * d)
    assert set(metrics["stages"]) == {"recovery_logit", "finetune"}
    assert (out / "cache" / "teacher_logits" / "chunk_000000.npy").read_bytes() == \
        (run / "cache" / "teacher_logits" / "chunk_000000.npy").read_bytes()

    # Without the run's cache the teacher labels the transfer text again: as its own tokenizer segments it, while the
    # student is fed the pruned segmentation. (The tiny teacher's logits barely depend on its input: its classifier
    # is scaled up, and centred, so that the two segmentations give it clearly different logits.)
    teacher = TFAutoModelForSequenceClassification.from_pretrained(str(run / "teacher"))
    predictor = TFPredictor(teacher, batch_size=16)
    examples = next(run_transfer_reader(source).chunks(0))[1]
    as_teacher_reads = source.encode(examples, tokenizer=load_tokenizer(str(run / "teacher")))
    teacher.classifier.kernel.assign(teacher.classifier.kernel * 1e4)
    teacher.classifier.bias.assign(teacher.classifier.bias - predictor.logits(as_teacher_reads).mean(axis=0))
    teacher.save_pretrained(str(run / "teacher"))
    transfer = teacher_transfer(source, tmp_path / "relabelled", batch_size=16, student_tokenizer=pruned.tokenizer)
    _, as_student_reads, logits = next(transfer.chunks())
    expected = predictor.logits(as_teacher_reads)
    np.testing.assert_allclose(logits, expected, atol=2e-2)
    assert np.abs(predictor.logits(as_student_reads) - expected).max() > 0.5
    assert as_student_reads.input_ids.max() < len(pruned.tokenizer)

    report = export_student(pruned)
    assert report["parity"]["fp32_vs_tf_max_abs_logit_diff"] <= 1e-4
    saved = json.loads((out / "model" / "config.json").read_text())
    assert saved["vocab_size"] == len(pruned.tokenizer)


def test_a_pruned_vocabulary_with_token_level_teacher_logits_is_refused(distilled_ner_dir, tmp_path):
    with pytest.raises(ConfigError, match="prune_vocabulary_min_count"):
        run_finetune(FinetuneConfig(model_dir=str(distilled_ner_dir), output_dir=str(tmp_path / "out"),
                                    task=str(write_task(tmp_path / "task", "ner")), epochs=1),
                     TrainerConfig(batch_size=8), pruning=PruningConfig(prune_vocabulary_min_count=2))
    assert not (tmp_path / "out").exists()
