"""Keeping dev/test texts (and their near repeats) out of extra transfer text."""
from xdistil.data.overlap import OverlapFilter, repeats_of, text_key
from xdistil.data.readers import NerExample, TextExample


def test_text_key_keeps_lowercased_letters_and_digits_only():
    assert text_key("It's a GREAT film, 10/10!") == "itsagreatfilm1010"
    assert text_key(" , . ") == ""


def test_filter_drops_equal_texts_near_repeats_of_eval_texts_and_repeated_candidates():
    dev_test = ["A wonderful, moving film about two brothers.", "Dull."]
    known = ["The plot never quite comes together."]
    candidates = [
        "a wonderful , moving film about two brothers .",    # a dev/test text, respaced and lowercased
        "dull !",                                             # a short dev/test text: equal key
        "the plot never quite comes together",                # a train/transfer text
        "wonderful moving film about two",                    # inside a dev/test text (>= 20 key characters)
        "In short: a wonderful, moving film about two brothers. See it.",  # contains a dev/test text
        "a film",                                             # inside one, but too short to call a repeat
        "Quite dull, really.",                                # contains 'dull': too short to count
        "An honest new sentence.",
        "an honest new sentence",                             # the same as the candidate before it
        " ... ",                                              # nothing to compare
    ]
    overlap = OverlapFilter(eval_texts=dev_test, known_texts=known)
    kept = overlap.keep(candidates)
    assert kept == ["a film", "Quite dull, really.", "An honest new sentence."]
    counts = overlap.counts
    assert (counts.kept, counts.duplicate, counts.near_eval, counts.empty) == (3, 4, 2, 1)
    assert overlap.counts.summary().startswith("3 kept; dropped 4 equal")


def test_filter_remembers_what_it_kept_across_calls():
    overlap = OverlapFilter(eval_texts=["nothing alike at all in this text"])
    assert overlap.keep(["first sentence here"]) == ["first sentence here"]
    assert overlap.keep(["First sentence, here.", "second one"]) == ["second one"]
    assert overlap.counts.kept == 2 and overlap.counts.duplicate == 1


def test_repeats_of_compares_whole_examples_without_labels():
    scored = [TextExample("A fine film.", None, "1"), TextExample("It rains.", "The ground is wet.", "yes"),
              NerExample(("Ann", "lives", "in", "Oslo"), ("B-PER", "O", "O", "B-LOC"))]
    transfer = [TextExample("a fine film", None, None),             # the first, unlabeled
                TextExample("It rains.", "The sun shines.", None),  # same premise, other hypothesis
                TextExample("it rains", "the ground is wet", None),  # the pair again
                TextExample("The ground is wet.", None, None),       # one text of a pair alone
                NerExample(("ann", "lives", "in", "oslo"), None),
                NerExample(("Ann", "lives", "in", "Bergen"), None)]
    assert repeats_of(scored, transfer) == [transfer[0], transfer[2], transfer[4]]
