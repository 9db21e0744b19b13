"""Masked distillation losses against independent NumPy loop implementations."""
import xdistil  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

import numpy as np
import pytest
import tensorflow as tf

from xdistil.distill import losses

B, T, H, C = 3, 6, 8, 5
LENGTHS = (6, 4, 1)


def _mask(lengths=LENGTHS, t=T):
    return np.array([[1] * n + [0] * (t - n) for n in lengths], dtype=np.int32)


def _garbage(x, keep, rng):
    """Fill positions where `keep` is false with huge values, inf and NaN."""
    x = x.copy()
    bad = ~np.broadcast_to(keep, x.shape)
    junk = rng.choice(np.array([1e30, -1e30, np.inf, -np.inf, np.nan], np.float32),
                      size=x.shape)
    x[bad] = junk[bad]
    return x


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _attention(rng, heads, mask):
    """Attention probabilities that put no mass on padded keys (as an HF encoder does)."""
    scores = rng.normal(size=(mask.shape[0], heads, T, T))
    scores = np.where(mask[:, None, None, :] > 0, scores, -1e9)
    return _softmax(scores).astype(np.float32)


# ---- independent NumPy references (explicit loops over real positions) -------------------

def ref_hidden_mse(s, t, m, normalizer=None):
    vals = [np.mean((s[b, i].astype(np.float64) - t[b, i]) ** 2)
            for b in range(m.shape[0]) for i in range(m.shape[1]) if m[b, i]]
    return sum(vals) / (normalizer if normalizer is not None else len(vals))


def _head_align(s, t):
    if s.shape[1] != t.shape[1]:
        with np.errstate(all="ignore"):
            return s.mean(axis=1, keepdims=True), t.mean(axis=1, keepdims=True)
    return s, t


def ref_attention(s, t, m, row_fn, normalizer=None):
    s, t = _head_align(s.astype(np.float64), t.astype(np.float64))
    total, count = 0.0, 0
    for b in range(m.shape[0]):
        keys = np.flatnonzero(m[b])
        for i in keys:
            total += np.mean([row_fn(s[b, h, i, keys], t[b, h, i, keys])
                              for h in range(s.shape[1])])
            count += 1
    return total / (normalizer if normalizer is not None else count)


def mse_row(s_row, t_row):
    return np.mean((s_row - t_row) ** 2)


def kl_row(s_row, t_row):
    p, q = t_row / t_row.sum(), s_row / s_row.sum()
    nz = p > 0
    return np.sum(p[nz] * np.log(p[nz] / q[nz]))


def ref_logit_mse(s, t, m, normalizer=None):
    s, t, m = s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1]), m.reshape(-1)
    vals = [np.mean((s[k].astype(np.float64) - t[k]) ** 2) for k in range(len(m)) if m[k]]
    return sum(vals) / (normalizer if normalizer is not None else len(vals))


def ref_logit_kl(s, t, temperature, m, normalizer=None):
    s, t, m = s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1]), m.reshape(-1)
    vals = []
    for k in range(len(m)):
        if m[k]:
            lp = _log_softmax(t[k].astype(np.float64) / temperature)
            lq = _log_softmax(s[k].astype(np.float64) / temperature)
            vals.append(np.sum(np.exp(lp) * (lp - lq)) * temperature ** 2)
    return sum(vals) / (normalizer if normalizer is not None else len(vals))


def ref_unit_vector_distance(s, t, m, normalizer=None):
    vals = [np.sum((s[b] / np.linalg.norm(s[b].astype(np.float64)) - t[b] / np.linalg.norm(t[b].astype(np.float64)))
                   ** 2) for b in range(len(m)) if m[b]]
    return sum(vals) / (normalizer if normalizer is not None else len(vals))


def ref_cross_entropy(logits, labels, ignore_index=-100, normalizer=None):
    logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
    vals = [-_log_softmax(logits[k].astype(np.float64))[labels[k]]
            for k in range(len(labels)) if labels[k] != ignore_index]
    return sum(vals) / (normalizer if normalizer is not None else len(vals))


# ---- fixtures: one case per loss, as (loss_fn, args, student_arg_index, reference, mask) --

def _cases(seed=0):
    rng = np.random.default_rng(seed)
    m = _mask()
    tok = m.astype(bool)[..., None]
    pair = (m[:, None, :, None] * m[:, None, None, :]).astype(bool)
    hs = rng.normal(size=(B, T, H)).astype(np.float32)
    ht = rng.normal(size=(B, T, H)).astype(np.float32)
    as_, at = _attention(rng, 4, m), _attention(rng, 4, m)
    ls, lt = (rng.normal(size=(B, T, C)) * 2).astype(np.float32), \
        (rng.normal(size=(B, T, C)) * 2).astype(np.float32)
    labels = np.where(m > 0, rng.integers(0, C, size=(B, T)), -100)
    cls_s, cls_t = rng.normal(size=(4, C)).astype(np.float32), \
        rng.normal(size=(4, C)).astype(np.float32)
    cls_m = np.array([1, 0, 1, 1], np.float32)
    vec_s, vec_t = rng.normal(size=(4, H)).astype(np.float32), (rng.normal(size=(4, H)) * 3).astype(np.float32)
    return {
        "hidden_mse": (losses.hidden_state_mse,
                       [_garbage(hs, tok, rng), _garbage(ht, tok, rng), m],
                       lambda n=None: ref_hidden_mse(hs, ht, m, n), tok),
        "attention_mse": (losses.attention_mse,
                          [_garbage(as_, pair, rng), _garbage(at, pair, rng), m],
                          lambda n=None: ref_attention(as_, at, m, mse_row, n), pair),
        "attention_kl": (losses.attention_kl,
                         [_garbage(as_, pair, rng), _garbage(at, pair, rng), m],
                         lambda n=None: ref_attention(as_, at, m, kl_row, n), pair),
        "logit_mse": (losses.logit_mse,
                      [_garbage(ls, tok, rng), _garbage(lt, tok, rng), m],
                      lambda n=None: ref_logit_mse(ls, lt, m, n), tok),
        "logit_kl": (lambda s, t, mask, normalizer=None: losses.logit_kl(
                         s, t, 2.0, mask=mask, normalizer=normalizer),
                     [_garbage(ls, tok, rng), _garbage(lt, tok, rng), m],
                     lambda n=None: ref_logit_kl(ls, lt, 2.0, m, n), tok),
        "logit_kl_classification": (
            lambda s, t, mask, normalizer=None: losses.logit_kl(
                s, t, 3.0, mask=mask, normalizer=normalizer),
            [_garbage(cls_s, cls_m[:, None] > 0, rng), cls_t, cls_m],
            lambda n=None: ref_logit_kl(cls_s, cls_t, 3.0, cls_m, n), cls_m[:, None] > 0),
        "unit_vector_distance": (losses.unit_vector_distance,
                                 [_garbage(vec_s, cls_m[:, None] > 0, rng), _garbage(vec_t, cls_m[:, None] > 0, rng),
                                  cls_m],
                                 lambda n=None: ref_unit_vector_distance(vec_s, vec_t, cls_m, n), cls_m[:, None] > 0),
        "cross_entropy": (lambda s, labels, normalizer=None: losses.masked_cross_entropy(
                              s, labels, normalizer=normalizer),
                          [_garbage(ls, labels[..., None] != -100, rng), labels],
                          lambda n=None: ref_cross_entropy(ls, labels, normalizer=n),
                          labels[..., None] != -100),
    }


CASES = sorted(_cases())


@pytest.mark.parametrize("name", CASES)
def test_matches_numpy_and_ignores_padding(name):
    fn, args, ref, _ = _cases()[name]
    loss = fn(*[tf.constant(a) for a in args])
    assert loss.dtype == tf.float32 and loss.shape == ()
    np.testing.assert_allclose(loss.numpy(), ref(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", CASES)
def test_normalizer_replaces_local_count(name):
    fn, args, ref, _ = _cases()[name]
    loss = fn(*[tf.constant(a) for a in args], normalizer=tf.constant(17, tf.int32))
    np.testing.assert_allclose(loss.numpy(), ref(17), rtol=1e-5, atol=1e-6)
    assert fn(*[tf.constant(a) for a in args], normalizer=0.0).numpy() == 0.0


@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16])
@pytest.mark.parametrize("name", CASES)
def test_low_precision_inputs_give_float32_close_to_float32(name, dtype):
    fn, args, ref, _ = _cases()[name]
    cast = [tf.cast(a, dtype) if a.dtype.kind == "f" and i < len(args) - 1 else tf.constant(a)
            for i, a in enumerate(args)]
    loss = fn(*cast)
    assert loss.dtype == tf.float32
    assert np.isfinite(loss.numpy())
    np.testing.assert_allclose(loss.numpy(), ref(), rtol=5e-2, atol=1e-3)


@pytest.mark.parametrize("name", CASES)
def test_all_masked_batch_gives_zero_and_zero_grads(name):
    fn, args, _, _ = _cases()[name]
    if name == "cross_entropy":
        args = [args[0], np.full_like(args[1], -100)]
    else:
        args = args[:-1] + [np.zeros_like(args[-1])]
    student = tf.Variable(args[0])
    with tf.GradientTape() as tape:
        loss = fn(student, *[tf.constant(a) for a in args[1:]])
    grad = tape.gradient(loss, student)
    assert loss.numpy() == 0.0
    assert np.all(tf.convert_to_tensor(grad).numpy() == 0.0)


@pytest.mark.parametrize("name", CASES)
def test_gradients_flow_to_real_positions_only(name):
    fn, args, _, keep = _cases()[name]
    student = tf.Variable(args[0])
    with tf.GradientTape() as tape:
        loss = fn(student, *[tf.constant(a) for a in args[1:]])
    grad = tf.convert_to_tensor(tape.gradient(loss, student)).numpy()
    keep = np.broadcast_to(keep, grad.shape)
    assert np.all(np.isfinite(grad))
    assert np.all(grad[~keep] == 0.0)
    # Every real row (position, or attention query row) receives gradient; an attention row
    # with a single real key is excluded: after renormalization it is [1.0] whatever it was.
    rows = np.abs(np.where(keep, grad, 0.0)).sum(axis=-1)
    assert np.all(rows[keep.sum(axis=-1) > 1] > 0)


def _attention_pair(student_heads, teacher_heads, seed=1):
    rng = np.random.default_rng(seed)
    m = _mask()
    return _attention(rng, student_heads, m), _attention(rng, teacher_heads, m), m


@pytest.mark.parametrize("fn,row", [(losses.attention_mse, mse_row),
                                    (losses.attention_kl, kl_row)])
def test_mismatched_head_counts_compare_head_averaged_maps(fn, row):
    s, t, m = _attention_pair(2, 4)
    expected = ref_attention(s.mean(1, keepdims=True), t.mean(1, keepdims=True), m, row)
    np.testing.assert_allclose(fn(s, t, m).numpy(), expected, rtol=1e-5, atol=1e-7)
    # Comparing a map with a head-permuted copy of itself: zero after head averaging when
    # the counts differ, non-zero when they match (heads are compared one to one).
    doubled = np.concatenate([s, s[:, ::-1]], axis=1)
    np.testing.assert_allclose(fn(s, doubled, m).numpy(), 0.0, atol=1e-6)
    assert fn(s, s[:, ::-1], m).numpy() > 1e-4


def test_attention_kl_renormalizes_over_real_keys():
    s, t, m = _attention_pair(4, 4)
    # Student puts half its mass on padding keys but has the same shape over real keys.
    leaky = np.where(m[:, None, None, :] > 0, t * 0.5, 0.5 / T).astype(np.float32)
    assert losses.attention_kl(leaky, t, m).numpy() == pytest.approx(0.0, abs=1e-6)
    assert losses.attention_kl(s, t, m).numpy() > 0.0


def test_attention_kl_handles_zero_probabilities():
    s, t, m = _attention_pair(4, 4)
    t = t.copy()
    t[:, :, :, 0] = 0.0  # teacher zeros: 0 * log 0 counts as 0
    s = s.copy()
    s[0, 0, 1, 1] = 0.0  # student zero where teacher has mass: clamped by eps, not inf
    loss = losses.attention_kl(s, t, m)
    assert np.isfinite(loss.numpy()) and loss.numpy() > 0


def test_logit_losses_without_mask_use_every_position():
    rng = np.random.default_rng(3)
    s, t = rng.normal(size=(4, C)).astype(np.float32), rng.normal(size=(4, C)).astype(np.float32)
    ones = np.ones(4)
    np.testing.assert_allclose(losses.logit_mse(s, t).numpy(), ref_logit_mse(s, t, ones),
                               rtol=1e-5)
    np.testing.assert_allclose(losses.logit_kl(s, t, 1.0).numpy(),
                               ref_logit_kl(s, t, 1.0, ones), rtol=1e-5)


def test_logit_kl_scales_with_temperature_squared():
    # For equal-shift logits KL is zero at any temperature; for a one-hot-ish difference the
    # T^2 factor is visible: KL(T) * 1 vs reference at T.
    rng = np.random.default_rng(4)
    s, t = rng.normal(size=(2, C)).astype(np.float32), rng.normal(size=(2, C)).astype(np.float32)
    assert losses.logit_kl(s, s + 3.0, 4.0).numpy() == pytest.approx(0.0, abs=1e-6)
    for temperature in (1.0, 2.0, 5.0):
        np.testing.assert_allclose(losses.logit_kl(s, t, temperature).numpy(),
                                   ref_logit_kl(s, t, temperature, np.ones(2)), rtol=1e-5)


def test_cross_entropy_classification_and_custom_ignore_index():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(5, C)).astype(np.float32)
    labels = np.array([0, 4, -1, 2, -1], np.int64)
    np.testing.assert_allclose(
        losses.masked_cross_entropy(logits, labels, ignore_index=-1).numpy(),
        ref_cross_entropy(logits, labels, ignore_index=-1), rtol=1e-5)


def test_works_in_graph_mode_with_dynamic_shapes():
    fn, args, ref, _ = _cases()["attention_kl"]
    graph_fn = tf.function(fn, input_signature=[
        tf.TensorSpec([None, 4, None, None], tf.float32),
        tf.TensorSpec([None, 4, None, None], tf.float32),
        tf.TensorSpec([None, None], tf.int32)])
    np.testing.assert_allclose(graph_fn(*args).numpy(), ref(), rtol=1e-5)
    fn, args, ref, _ = _cases()["hidden_mse"]
    graph_fn = tf.function(fn, input_signature=[
        tf.TensorSpec([None, None, H], tf.float32), tf.TensorSpec([None, None, H], tf.float32),
        tf.TensorSpec([None, None], tf.int32)])
    np.testing.assert_allclose(graph_fn(*args).numpy(), ref(), rtol=1e-5)


def test_unit_vector_distance_ignores_scale_and_spans_zero_to_four():
    v = np.array([[1.0, 2.0, -2.0], [0.5, 0.0, 0.0]], np.float32)
    np.testing.assert_allclose(losses.unit_vector_distance(v, 7 * v).numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(losses.unit_vector_distance(v, -v).numpy(), 4.0, rtol=1e-6)
