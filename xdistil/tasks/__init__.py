"""Task kinds, one class each: `get_task("ner" | "classification" | "pairwise")`."""
from xdistil.tasks.base import Task
from xdistil.tasks.classification import SequenceClassification
from xdistil.tasks.tagging import TokenTagging

TASKS = {task.kind: task for task in (TokenTagging(), SequenceClassification(pair=False),
                                      SequenceClassification(pair=True))}
TASK_KINDS = tuple(TASKS)


def get_task(kind: str) -> Task:
    """The task of a kind name (as saved in model directories and chosen by --do_NER / --do_pairwise)."""
    try:
        return TASKS[kind]
    except KeyError:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {TASK_KINDS}") from None


def task_kind_from_flags(do_ner: bool, do_pairwise: bool) -> str:
    from xdistil.errors import ConfigError

    if do_ner and do_pairwise:
        raise ConfigError("--do_NER", "--do_NER and --do_pairwise are exclusive")
    return "ner" if do_ner else "pairwise" if do_pairwise else "classification"


__all__ = ["TASKS", "TASK_KINDS", "Task", "get_task", "task_kind_from_flags"]
