"""The streaming, chunked transfer-file reader."""
import inspect
import tracemalloc

import pytest

from xdistil.data.readers import NerExample, TextExample
from xdistil.data.transfer import ExamplesChunkReader, TransferChunkReader, transfer_paths
from xdistil.errors import InputFileError, InputFormatError
from xdistil.tasks import get_task


def texts(chunk):
    return [example.text_a for example in chunk]


@pytest.fixture
def transfer_with_blanks(tmp_path):
    """Texts t0..t9, with blank and whitespace-only lines in between and a CRLF line."""
    lines = ["t0", "", "t1", "t2", "  ", "", "t3", "t4\r", "t5", "", "t6", "t7", "t8", "t9", ""]
    path = tmp_path / "transfer.txt"
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    return path


def test_chunks_skip_blank_lines(transfer_with_blanks):
    reader = TransferChunkReader(transfer_with_blanks, get_task("classification"), chunk_size=4)
    chunks = [(index, texts(examples)) for index, examples in reader.chunks()]
    assert chunks == [(0, ["t0", "t1", "t2", "t3"]), (1, ["t4", "t5", "t6", "t7"]),
                      (2, ["t8", "t9"])]
    assert reader.skipped_blank_lines == 5


@pytest.mark.parametrize("start_chunk", [1, 2, 3])
def test_start_chunk_gives_the_same_chunks(transfer_with_blanks, start_chunk):
    reader = TransferChunkReader(transfer_with_blanks, get_task("classification"), chunk_size=4)
    all_chunks = [(index, texts(examples)) for index, examples in reader.chunks()]
    resumed = [(index, texts(examples)) for index, examples in reader.chunks(start_chunk)]
    assert resumed == all_chunks[start_chunk:]


def test_ner_and_pairwise_chunks(tmp_path):
    ner_path = tmp_path / "ner.txt"
    ner_path.write_text("John lives  in Paris\textra column\nacme corp\n")
    [(index, examples)] = TransferChunkReader(ner_path, get_task("ner"), chunk_size=5).chunks()
    assert index == 0
    assert examples == [NerExample(("John", "lives", "in", "Paris"), None),
                        NerExample(("acme", "corp"), None)]
    pair_path = tmp_path / "pairs.txt"
    pair_path.write_text("a film\tthe movie\t1\n")
    [(_, examples)] = TransferChunkReader(pair_path, get_task("pairwise"), chunk_size=5).chunks()
    assert examples == [TextExample("a film", "the movie", None)]


def test_chunks_are_read_lazily(tmp_path):
    lines = [f"a\tb{i}" for i in range(10)] + ["only one column"] + ["a\tb"] * 5
    path = tmp_path / "pairs.txt"
    path.write_text("\n".join(lines) + "\n")
    reader = TransferChunkReader(path, get_task("pairwise"), chunk_size=3)
    chunks = reader.chunks()
    assert inspect.isgenerator(chunks)
    index, examples = next(chunks)
    assert index == 0 and [example.text_b for example in examples] == ["b0", "b1", "b2"]
    next(chunks), next(chunks)
    with pytest.raises(InputFormatError) as caught:
        next(chunks)  # chunk 3 holds line 11
    assert str(caught.value).startswith(f"{path}:11: expected at least 2")


def test_skipped_chunks_are_not_parsed(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("a\tb0\nbad line\na\tb2\na\tb3\n")
    reader = TransferChunkReader(path, get_task("pairwise"), chunk_size=2)
    assert [(index, [example.text_b for example in examples])
            for index, examples in reader.chunks(start_chunk=1)] == [(1, ["b2", "b3"])]
    assert list(reader.chunks(start_chunk=2)) == []


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "transfer.txt"
    path.write_bytes(b"fine\n\nbroken \xc3\x28 text\n")
    with pytest.raises(InputFormatError) as caught:
        list(TransferChunkReader(path, get_task("classification"), chunk_size=10).chunks())
    assert str(caught.value).startswith(f"{path}:3: invalid UTF-8")


def test_memory_stays_bounded_by_the_chunk(tmp_path):
    path = tmp_path / "big.txt"
    line = "the good movie and the awful plot were in paris and london " * 2
    num_lines = 20_000
    path.write_text((line + "\n") * num_lines)
    file_size = path.stat().st_size  # about 2.4 MB
    reader = TransferChunkReader(path, get_task("classification"), chunk_size=50)
    tracemalloc.start()
    try:
        num_examples = sum(len(examples) for _, examples in reader.chunks())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert num_examples == num_lines
    assert peak < file_size / 10


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="chunk_size"):
        TransferChunkReader(tmp_path / "t.txt", get_task("ner"), chunk_size=0)
    with pytest.raises(InputFileError, match="transfer file not found"):
        TransferChunkReader(tmp_path / "t.txt", get_task("ner"), chunk_size=2)


def test_max_lines_reads_only_the_first_examples(tmp_path):
    path = tmp_path / "transfer.txt"
    path.write_text("".join(f"line {i}\n" + ("\n" if i % 3 == 0 else "") for i in range(10)))
    reader = TransferChunkReader(path, get_task("classification"), 3, max_lines=7)
    chunks = list(reader.chunks())
    assert [i for i, _ in chunks] == [0, 1, 2]
    assert [e.text_a for _, examples in chunks for e in examples] == [f"line {i}" for i in range(7)]
    assert [i for i, _ in reader.chunks(start_chunk=2)] == [2]


@pytest.fixture
def two_files(tmp_path):
    """a.txt holds a0..a4 (one blank line), b.tsv holds b0..b3 with a label column."""
    first, second = tmp_path / "a.txt", tmp_path / "b.tsv"
    first.write_text("a0\na1\n\na2\na3\na4\n")
    second.write_text("b0\tfresh\nb1\trotten\nb2\tfresh\nb3\tfresh\n")
    return first, second


def test_several_files_are_one_stream(two_files):
    first, second = two_files
    reader = TransferChunkReader(f"{first},{second}", get_task("classification"), chunk_size=4)
    chunks = [(index, texts(examples)) for index, examples in reader.chunks()]
    assert chunks == [(0, ["a0", "a1", "a2", "a3"]), (1, ["a4", "b0", "b1", "b2"]), (2, ["b3"])]
    assert reader.skipped_blank_lines == 1
    as_list = TransferChunkReader([first, second], get_task("classification"), chunk_size=4)
    assert [(index, texts(examples)) for index, examples in as_list.chunks(start_chunk=1)] == chunks[1:]
    assert transfer_paths(f" {first} , {second} ") == [str(first), str(second)]


def test_errors_name_the_file_they_are_in(two_files, tmp_path):
    first, _ = two_files
    broken = tmp_path / "pairs.tsv"
    broken.write_text("x\ty\nonly one column\n")
    pairs = tmp_path / "good_pairs.tsv"
    pairs.write_text("p\tq\n")
    with pytest.raises(InputFormatError) as caught:
        list(TransferChunkReader([pairs, broken], get_task("pairwise"), chunk_size=10).chunks())
    assert str(caught.value).startswith(f"{broken}:2: expected at least 2")
    missing = tmp_path / "missing.txt"
    with pytest.raises(InputFileError, match="missing.txt"):
        TransferChunkReader(f"{first},{missing}", get_task("classification"), chunk_size=2)
    with pytest.raises(ValueError, match="no transfer file"):
        transfer_paths(" , ")


def test_examples_in_memory_come_in_the_same_chunks():
    examples = [TextExample(f"t{i}", None, None) for i in range(7)]
    reader = ExamplesChunkReader(examples, chunk_size=3)
    assert [(index, texts(chunk)) for index, chunk in reader.chunks()] == [
        (0, ["t0", "t1", "t2"]), (1, ["t3", "t4", "t5"]), (2, ["t6"])]
    assert [index for index, _ in reader.chunks(2)] == [2]
