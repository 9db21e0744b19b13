"""Readers for the task TSV files, unlabeled lines and label lists."""
import pytest

from xdistil.data.readers import NerExample, TextExample, decode_line
from xdistil.errors import InputFileError, InputFormatError
from xdistil.tasks import get_task


def write(path, content):
    """Write str content as UTF-8 (newlines untranslated) or bytes as they are."""
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_input_format_error_names_file_and_line():
    err = InputFormatError("data/train.tsv", 7, "empty text")
    assert isinstance(err, ValueError)
    assert (err.path, err.line_no, err.message) == ("data/train.tsv", 7, "empty text")
    assert str(err) == "data/train.tsv:7: empty text"


def test_ner_file(tmp_path):
    path = write(tmp_path / "train.tsv",
                 "John  lives in Paris\tB-PER O O B-LOC\n\n   \nacme corp\tB-ORG I-ORG\n")
    assert get_task("ner").read_labeled(path) == [
        NerExample(("John", "lives", "in", "Paris"), ("B-PER", "O", "O", "B-LOC")),
        NerExample(("acme", "corp"), ("B-ORG", "I-ORG")),
    ]


def test_classification_file_with_integer_labels_keeps_strings(tmp_path):
    path = write(tmp_path / "train.tsv", "a good movie\t1\n awful plot \t 0 \n")
    assert get_task("classification").read_labeled(path, ["0", "1"]) == [
        TextExample("a good movie", None, "1"), TextExample("awful plot", None, "0")]


def test_pairwise_file_with_string_labels(tmp_path):
    path = write(tmp_path / "train.tsv",
                 "john lives in paris\tjohn is in paris\tentailment\n"
                 "mary works\tmary was bad\tneutral\n")
    assert get_task("pairwise").read_labeled(path) == [
        TextExample("john lives in paris", "john is in paris", "entailment"),
        TextExample("mary works", "mary was bad", "neutral"),
    ]


def test_crlf_and_bom(tmp_path):
    path = write(tmp_path / "train.tsv", "\ufeffgood film\tpos\r\n\r\nbad film\tneg\r\n")
    assert get_task("classification").read_labeled(path) == [
        TextExample("good film", None, "pos"), TextExample("bad film", None, "neg")]


@pytest.mark.parametrize("raw, line_no, expected", [
    (b"a\tb\r\n", 2, "a\tb"), (b"a\tb\n", 2, "a\tb"), (b"a\tb", 2, "a\tb"),
    (b"\xef\xbb\xbfa\r\n", 1, "a"), (b"\xef\xbb\xbfa\n", 2, "\ufeffa"),
])
def test_decode_line_strips_line_ending(raw, line_no, expected):
    assert decode_line(raw, "f.tsv", line_no) == expected


def test_ner_crlf_does_not_leak_into_last_tag(tmp_path):
    path = write(tmp_path / "train.tsv", "john works\tB-PER O\r\n")
    assert get_task("ner").read_labeled(path, ["O", "B-PER"])[0].tags == ("B-PER", "O")


@pytest.mark.parametrize("kind, content, label_list, line_no, message", [
    ("classification", "good\t1\n\nbad\n", None,
     3, "expected 2 tab-separated columns (text, label), found 1"),
    ("classification", "good\t1\t2\n", None,
     1, "expected 2 tab-separated columns (text, label), found 3"),
    ("pairwise", "a\tb\t1\na\tb\n", None,
     2, "expected 3 tab-separated columns (text_a, text_b, label), found 2"),
    ("ner", "john\tB-PER\njohn works\tB-PER\n", None, 2, "2 tokens but 1 tags"),
    ("ner", "john\tB-PER\n  \tO\n", None, 2, "empty tokens column"),
    ("classification", "good\t1\n \t0\n", None, 2, "empty text"),
    ("pairwise", "\na\t \t1\n", None, 2, "empty text_b"),
    ("classification", "good\t\n", None, 1, "empty label"),
    ("classification", "good\t1\n\nbad\t2\n", ["0", "1"], 3, "unknown label '2' (known: 0, 1)"),
    ("pairwise", "a\tb\tyes\n", ["no"], 1, "unknown label 'yes' (known: no)"),
    ("ner", "john paris\tB-PER B-LOC\n", ["O", "B-PER"], 1,
     "unknown label 'B-LOC' (known: B-PER, O)"),
    ("classification", b"good\t1\nbad \xff\xfe film\t0\n", None,
     2, "invalid UTF-8 (byte 0xff at byte offset 4 of the line)"),
])
def test_labeled_file_errors(tmp_path, kind, content, label_list, line_no, message):
    path = write(tmp_path / "dev.tsv", content)
    with pytest.raises(InputFormatError) as caught:
        get_task(kind).read_labeled(path, label_list)
    assert str(caught.value) == f"{path}:{line_no}: {message}"
    assert caught.value.line_no == line_no


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown task kind"):
        get_task("tagging")


@pytest.mark.parametrize("kind, line, expected", [
    ("ner", "John  lives\tin Paris", NerExample(("John", "lives"), None)),
    ("classification", " a good film \t1\textra", TextExample("a good film", None, None)),
    ("pairwise", "a film\tthe movie\t1", TextExample("a film", "the movie", None)),
])
def test_parse_unlabeled_line(kind, line, expected):
    assert get_task(kind).parse_unlabeled(line, "transfer.txt", 4) == expected


@pytest.mark.parametrize("kind, line, message", [
    ("ner", " \tjohn", "empty sentence"),
    ("classification", "  \tgood", "empty text"),
    ("pairwise", "just one text", "expected at least 2 tab-separated columns (text_a, text_b), "
                                   "found 1"),
    ("pairwise", "a film\t ", "empty text_b"),
])
def test_parse_unlabeled_line_errors(kind, line, message):
    with pytest.raises(InputFormatError) as caught:
        get_task(kind).parse_unlabeled(line, "transfer.txt", 12)
    assert str(caught.value) == f"transfer.txt:12: {message}"


def test_prediction_file_blank_line_is_an_error_unless_skipped(tmp_path):
    path = write(tmp_path / "predict.txt", "a film\n\nthe movie\r\n")
    with pytest.raises(InputFormatError) as caught:
        get_task("classification").read_unlabeled(path)
    assert str(caught.value) == f"{path}:2: blank line"
    assert get_task("classification").read_unlabeled(path, skip_blank=True) == [
        TextExample("a film", None, None), TextExample("the movie", None, None)]


def test_label_list_from_labels_file_keeps_file_order(tmp_path):
    write(tmp_path / "labels.tsv", "O\nB-PER\textra\n\nI-PER\n")
    train = [NerExample(("x",), ("B-LOC",))]
    assert get_task("ner").label_list(tmp_path, train) == ["O", "B-PER", "I-PER"]


def test_label_list_file_with_duplicates(tmp_path):
    path = write(tmp_path / "labels.tsv", "neg\npos\n\nneg\n")
    with pytest.raises(InputFormatError) as caught:
        get_task("classification").label_list(tmp_path, [])
    assert str(caught.value) == f"{path}:4: duplicate label 'neg' (first on line 1)"


@pytest.mark.parametrize("labels, expected", [
    (["10", "2", "-1", "2"], ["-1", "2", "10"]),
    (["pos", "neg", "neutral", "neg"], ["neg", "neutral", "pos"]),
    (["10", "2", "x"], ["10", "2", "x"]),
])
def test_label_list_from_train_text_labels(tmp_path, labels, expected):
    train = [TextExample("text", None, label) for label in labels]
    assert get_task("classification").label_list(tmp_path, train) == expected


def test_label_list_from_train_ner_puts_o_first(tmp_path):
    train = [NerExample(("a", "b", "c"), ("I-PER", "B-PER", "O")),
             NerExample(("d",), ("B-LOC",))]
    assert get_task("ner").label_list(tmp_path, train) == ["O", "B-LOC", "B-PER", "I-PER"]


@pytest.mark.parametrize("kind, content", [
    ("classification", "text\tlabel\ngood film\tpos\nbad film\tneg\n"),
    ("pairwise", "premise\thypothesis\tgold_label\na\tb\tyes\nc\td\tno\n"),
    ("ner", "tokens\ttags\njohn works\tB-PER O\n"),
])
def test_a_header_row_is_refused_with_a_hint(tmp_path, kind, content):
    path = write(tmp_path / "train.tsv", content)
    with pytest.raises(InputFormatError, match="line 1 looks like a header row") as caught:
        get_task(kind).read_labeled(path)
    assert caught.value.line_no == 1


def test_a_first_row_whose_label_recurs_is_data(tmp_path):
    path = write(tmp_path / "train.tsv", "label\tlabel\nlabel the box\tlabel\nother\tnone\n")
    assert [e.label for e in get_task("classification").read_labeled(path)] == ["label", "label", "none"]


def test_a_header_row_with_a_label_list_gets_the_hint(tmp_path):
    path = write(tmp_path / "dev.tsv", "text\tlabel\ngood film\tpos\n")
    with pytest.raises(InputFormatError, match="line 1 looks like a header row"):
        get_task("classification").read_labeled(path, ["pos", "neg"])


def test_missing_and_directory_files_name_the_path(tmp_path):
    with pytest.raises(InputFileError, match="file not found"):
        get_task("ner").read_labeled(tmp_path / "nope.tsv")
    with pytest.raises(InputFileError, match="is a directory"):
        get_task("ner").read_unlabeled(tmp_path)
