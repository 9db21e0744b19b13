import xdistil  # noqa: F401

from transformers import BertConfig, TFBertForSequenceClassification, TFBertForTokenClassification

from xdistil.distill.unfreezing import num_unfrozen_groups, unfreeze_interval, unfreezing_groups
from xdistil.models.loading import word_embedding_variable


def _tiny(cls, layers=3):
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=32, num_labels=3)
    model = cls(config)
    model(model.dummy_inputs)
    return model


def _names(group):
    return sorted(v.name.split("/", 1)[1] for v in group)


def test_groups_go_top_down_one_encoder_layer_each():
    model = _tiny(TFBertForTokenClassification)
    groups = unfreezing_groups(model)
    assert len(groups) == 1 + 3 + 1
    assert all("classifier" in n for n in _names(groups[0]))
    for group, layer in zip(groups[1:4], (2, 1, 0)):
        assert all(f"layer_._{layer}/" in n for n in _names(group)), _names(group)
    assert all("/embeddings/" in n for n in _names(groups[-1]))
    assert sum(len(g) for g in groups) == len(model.trainable_variables)


def test_pooler_belongs_to_the_head_and_frozen_embedding_is_left_out():
    model = _tiny(TFBertForSequenceClassification, layers=2)
    frozen = word_embedding_variable(model)
    groups = unfreezing_groups(model, frozen=[frozen])
    assert any("pooler" in n for n in _names(groups[0]))
    assert all(v is not frozen for g in groups for v in g)
    assert sum(len(g) for g in groups) == len(model.trainable_variables) - 1


def test_encoder_variables_outside_the_layers_unfreeze_with_the_embeddings():
    """MPNet's relative position bias is read by every layer: it must not train from the first step."""
    from transformers import MPNetConfig, TFMPNetForSequenceClassification

    model = TFMPNetForSequenceClassification(MPNetConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2,
                                                         num_attention_heads=2, intermediate_size=32))
    model(model.dummy_inputs)
    groups = unfreezing_groups(model)
    assert len(groups) == 1 + 2 + 1
    assert not any("relative_attention_bias" in n for group in groups[:-1] for n in _names(group))
    assert any("relative_attention_bias" in n for n in _names(groups[-1]))
    assert sum(len(g) for g in groups) == len(model.trainable_variables)


def test_schedule_unfreezes_one_group_per_interval_until_fraction():
    interval = unfreeze_interval(total_steps=100, num_groups=5, unfreeze_fraction=0.4)
    assert interval == 10
    counts = [num_unfrozen_groups(step, 5, interval) for step in range(100)]
    assert counts[0] == 1 and counts[9] == 1 and counts[10] == 2
    assert counts[39] == 4 and counts[40] == 5 and counts[-1] == 5
    assert num_unfrozen_groups(0, 5, unfreeze_interval(100, 5, 0.0)) == 5
