"""The flags of run_xtreme_distil.py (derived from the config sections) and the config they resolve into."""
from __future__ import annotations

from absl import flags

from xdistil.cli import define_flags as define_section_flags
from xdistil.cli import section_from_flags
from xdistil.config import SECTIONS, DistilConfig
from xdistil.errors import ConfigError
from xdistil.tasks import task_kind_from_flags


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Register the distillation flags: one per config field, plus the task kind, model_dir and --overwrite."""
    flags.DEFINE_string("model_dir", None, "Output model directory (resumes an identical run found there).",
                        flag_values=flag_values)
    flags.DEFINE_bool("do_NER", False, "Token tagging (BIO/BIOES).", flag_values=flag_values)
    flags.DEFINE_bool("do_pairwise", False, "Sentence-pair classification (text_a, text_b, label).",
                      flag_values=flag_values)
    flags.DEFINE_bool("overwrite", False, "When --model_dir holds a run made with other settings or inputs, delete it "
                                          "and start over (without it, such a run stops before writing anything).",
                      flag_values=flag_values)
    for section in SECTIONS.values():
        define_section_flags(section, flag_values)


def config_from_flags(values) -> DistilConfig:
    """Resolve parsed flags into a DistilConfig (ConfigError naming the flag on a bad value)."""
    if not values.model_dir:
        raise ConfigError("model_dir", "a value is required")
    kind = task_kind_from_flags(values.do_NER, values.do_pairwise)
    sections = {name: section_from_flags(section, values, **({"task_kind": kind} if name == "data" else {}))
                for name, section in SECTIONS.items()}
    return DistilConfig(model_dir=values.model_dir, **sections)
