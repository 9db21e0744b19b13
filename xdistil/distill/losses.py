"""Masked distillation losses.

Every loss casts its float inputs to float32 (so it runs unchanged under mixed_bfloat16 or
mixed_float16) and returns a float32 scalar: the sum of per-position losses over real
positions divided by the number of real positions, or by `normalizer` when one is given
(e.g. the global count of real tokens across replicas). A zero denominator gives 0, not NaN.

Padded positions are replaced by zeros *before* any arithmetic, so garbage there (huge
values, inf, NaN) can reach neither the loss nor the gradients, and their gradient is 0.
Masks are 0/1 tensors of any numeric (or bool) dtype.
"""
import tensorflow as tf


def _as_bool(mask):
    return tf.cast(mask, tf.bool)


def _zero_where_padded(x, keep):
    """`x` where `keep` (broadcast to x) is true, else 0; padding never reaches the math."""
    keep = tf.broadcast_to(keep, tf.shape(x))
    return tf.where(keep, x, tf.zeros_like(x))


def _average(per_position, keep, normalizer):
    """Sum of `per_position` over `keep`, divided by `normalizer` or by the count of `keep`."""
    total = tf.reduce_sum(tf.where(keep, per_position, tf.zeros_like(per_position)))
    if normalizer is None:
        denominator = tf.reduce_sum(tf.cast(keep, tf.float32))
    else:
        denominator = tf.cast(normalizer, tf.float32)
    return tf.math.divide_no_nan(total, denominator)


def _position_mask(mask, shape_without_last):
    """Bool mask over positions; all true when `mask` is None."""
    if mask is None:
        return tf.ones(shape_without_last, tf.bool)
    return _as_bool(mask)


def _align_heads(student_attention, teacher_attention):
    """Same head count: unchanged. Different: each side averaged over its heads ([B,1,T,T])."""
    student_heads = student_attention.shape[1]
    teacher_heads = teacher_attention.shape[1]
    if student_heads is None or teacher_heads is None:
        raise ValueError("attention tensors need a static head dimension (axis 1), got "
                         f"{student_attention.shape} and {teacher_attention.shape}")
    if student_heads == teacher_heads:
        return student_attention, teacher_attention
    return (tf.reduce_mean(student_attention, axis=1, keepdims=True),
            tf.reduce_mean(teacher_attention, axis=1, keepdims=True))


def _attention_pair_masks(mask):
    """(query mask [B,T], key mask [B,1,1,T], pair mask [B,1,T,T]) as bools."""
    query = _as_bool(mask)
    key = query[:, None, None, :]
    pair = tf.logical_and(query[:, None, :, None], key)
    return query, key, pair


def hidden_state_mse(student_hidden, teacher_hidden, mask, normalizer=None):
    """Mean over the hidden axis of the squared error, averaged over real tokens.

    student_hidden, teacher_hidden: [B, T, H] (the student already projected to the teacher
    width); mask: [B, T].
    """
    keep = _as_bool(mask)
    student = _zero_where_padded(tf.cast(student_hidden, tf.float32), keep[..., None])
    teacher = _zero_where_padded(tf.cast(teacher_hidden, tf.float32), keep[..., None])
    per_token = tf.reduce_mean(tf.square(student - teacher), axis=-1)
    return _average(per_token, keep, normalizer)


def attention_mse(student_attention, teacher_attention, mask, normalizer=None):
    """Squared error between attention probabilities over valid (query, key) pairs.

    student_attention: [B, Hs, T, T]; teacher_attention: [B, Ht, T, T]; mask: [B, T].
    For each head and real query row, the squared error is averaged over the real keys of
    that row; these row values are averaged over heads, then over real query tokens (the
    `normalizer`, if given, counts real query tokens). Pairs with a padded query or key are
    ignored. If Hs != Ht, the head-averaged maps of the two sides are compared instead.
    """
    student, teacher = _align_heads(tf.cast(student_attention, tf.float32),
                                    tf.cast(teacher_attention, tf.float32))
    query, key, pair = _attention_pair_masks(mask)
    student = _zero_where_padded(student, pair)
    teacher = _zero_where_padded(teacher, pair)
    valid_keys = tf.reduce_sum(tf.cast(key, tf.float32), axis=-1, keepdims=True)  # [B,1,1,1]
    per_row = tf.math.divide_no_nan(
        tf.reduce_sum(tf.square(student - teacher), axis=-1), valid_keys[..., 0])  # [B,H,T]
    per_query = tf.reduce_mean(per_row, axis=1)  # [B,T]
    return _average(per_query, query, normalizer)


def attention_kl(student_attention, teacher_attention, mask, normalizer=None, eps=1e-8):
    """MiniLM-style KL(teacher || student) between attention distributions.

    student_attention: [B, Hs, T, T]; teacher_attention: [B, Ht, T, T] (probabilities over
    the last axis); mask: [B, T]. For each head and real query row, both rows are restricted
    to the real keys and renormalized to sum to 1; then
    KL = sum_k p_k * (log p_k - log max(q_k, eps)), with 0 * log 0 = 0 for teacher zeros.
    Row values are averaged over heads, then over real query tokens (the `normalizer`, if
    given, counts real query tokens). If Hs != Ht, the head-averaged maps are compared.
    """
    student, teacher = _align_heads(tf.cast(student_attention, tf.float32),
                                    tf.cast(teacher_attention, tf.float32))
    query, _, pair = _attention_pair_masks(mask)
    student = _zero_where_padded(student, pair)
    teacher = _zero_where_padded(teacher, pair)
    p = tf.math.divide_no_nan(teacher, tf.reduce_sum(teacher, axis=-1, keepdims=True))
    q = tf.math.divide_no_nan(student, tf.reduce_sum(student, axis=-1, keepdims=True))
    per_pair = tf.math.xlogy(p, p) - p * tf.math.log(tf.maximum(q, eps))
    per_row = tf.reduce_sum(per_pair, axis=-1)  # [B,H,T]
    per_query = tf.reduce_mean(per_row, axis=1)  # [B,T]
    return _average(per_query, query, normalizer)


def logit_mse(student_logits, teacher_logits, mask=None, normalizer=None):
    """Mean over classes of the squared logit error, averaged over masked positions.

    NER: logits [B, T, C], mask [B, T]. Classification: logits [B, C], mask [B] or None
    (None means every position counts).
    """
    student = tf.cast(student_logits, tf.float32)
    teacher = tf.cast(teacher_logits, tf.float32)
    keep = _position_mask(mask, tf.shape(student)[:-1])
    student = _zero_where_padded(student, keep[..., None])
    teacher = _zero_where_padded(teacher, keep[..., None])
    per_position = tf.reduce_mean(tf.square(student - teacher), axis=-1)
    return _average(per_position, keep, normalizer)


def logit_kl(student_logits, teacher_logits, temperature, mask=None, normalizer=None):
    """KL(softmax(t/T) || softmax(s/T)) * T^2 per position, averaged over masked positions.

    Shapes as in `logit_mse`. The T^2 factor keeps gradient magnitudes comparable across
    temperatures (Hinton et al., 2015).
    """
    temperature = tf.cast(temperature, tf.float32)
    student = tf.cast(student_logits, tf.float32)
    teacher = tf.cast(teacher_logits, tf.float32)
    keep = _position_mask(mask, tf.shape(student)[:-1])
    student = _zero_where_padded(student, keep[..., None]) / temperature
    teacher = _zero_where_padded(teacher, keep[..., None]) / temperature
    teacher_log_probs = tf.nn.log_softmax(teacher, axis=-1)
    student_log_probs = tf.nn.log_softmax(student, axis=-1)
    per_position = tf.reduce_sum(
        tf.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs), axis=-1)
    return _average(per_position * tf.square(temperature), keep, normalizer)


def masked_cross_entropy(logits, labels, ignore_index=-100, normalizer=None):
    """Softmax cross-entropy averaged over positions whose label is not `ignore_index`.

    logits: [B, T, C] with labels [B, T] (tagging), or [B, C] with labels [B].
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    keep = tf.not_equal(labels, ignore_index)
    safe_labels = tf.where(keep, labels, tf.zeros_like(labels))
    logits = _zero_where_padded(logits, keep[..., None])
    per_position = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels,
                                                                  logits=logits)
    return _average(per_position, keep, normalizer)


def unit_vector_distance(student_vectors, teacher_vectors, mask=None, normalizer=None):
    """Squared Euclidean distance between the unit vectors of each row's student and teacher vectors ([B, H]
    each; 2 - 2 cos, in [0, 4]), averaged over the real rows of `mask` ([B]): PKD's loss on [CLS] states."""
    keep = _position_mask(mask, tf.shape(student_vectors)[:1])
    student = tf.math.l2_normalize(_zero_where_padded(tf.cast(student_vectors, tf.float32), keep[:, None]), axis=-1)
    teacher = tf.math.l2_normalize(_zero_where_padded(tf.cast(teacher_vectors, tf.float32), keep[:, None]), axis=-1)
    per_row = tf.reduce_sum(tf.square(student - teacher), axis=-1)
    return _average(per_row, keep, normalizer)
