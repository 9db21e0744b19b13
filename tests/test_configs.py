"""Every recipe in configs/ resolves with the flags of the script it is for: a renamed or removed flag, or a value a
setting no longer accepts, fails here rather than in a user's hour-long run. Recipes named prune_*.cfg are for
run_finetune.py, the others for run_xtreme_distil.py."""
from pathlib import Path

import pytest
from absl import flags

from xdistil import cli
from xdistil.distill_flags import config_from_flags, define_flags
from xdistil.finetune import RUN_SECTIONS

RECIPES = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.cfg"))
FINETUNE_RECIPES = [recipe for recipe in RECIPES if recipe.name.startswith("prune_")]
DISTILLATION_RECIPES = [recipe for recipe in RECIPES if recipe not in FINETUNE_RECIPES]


def _says_what_it_is(recipe: Path) -> bool:
    """A recipe starts with comment lines: what it runs, and what it measured."""
    return recipe.read_text(encoding="utf-8").startswith("# ")


@pytest.mark.parametrize("recipe", DISTILLATION_RECIPES, ids=lambda recipe: recipe.name)
def test_a_distillation_recipe_resolves_to_a_config(recipe):
    values = flags.FlagValues()
    define_flags(values)
    values(["run_xtreme_distil.py", f"--flagfile={recipe}"])
    config = config_from_flags(values)
    assert config.path.parts[0] == "out" and (config.data.task or config.data.general_distillation)
    assert _says_what_it_is(recipe)


@pytest.mark.parametrize("recipe", FINETUNE_RECIPES, ids=lambda recipe: recipe.name)
def test_a_pruning_recipe_resolves_to_its_sections(recipe):
    values = flags.FlagValues()
    for section in RUN_SECTIONS.values():
        cli.define_flags(section, values)
    values(["run_finetune.py", f"--flagfile={recipe}"])
    finetune, _, _, pruning = (cli.section_from_flags(section, values) for section in RUN_SECTIONS.values())
    finetune.check()
    assert Path(finetune.output_dir).parts[0] == "out" and pruning.active
    assert _says_what_it_is(recipe)
