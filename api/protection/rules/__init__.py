"""Validation rules for the shape limits, one per module, each linear in the document.

Every walk over a document visits each fragment once (`_measure.FragmentMeasure`): a document whose
fragments spread one another twice per level stays as cheap to measure as it is to read.
"""

from api.protection.rules.max_aliases import max_aliases_rule
from api.protection.rules.max_depth import max_depth_rule
from api.protection.rules.max_directives import max_directives_rule
from api.protection.rules.max_field_repeats import max_field_repeats_rule
from api.protection.rules.max_fragments import max_fragments_rule
from api.protection.rules.max_operations import max_operations_rule
from api.protection.rules.max_selections import max_selections_rule

__all__ = [
    "max_aliases_rule",
    "max_depth_rule",
    "max_directives_rule",
    "max_field_repeats_rule",
    "max_fragments_rule",
    "max_operations_rule",
    "max_selections_rule",
]
