"""Interventions: write into the recurrence (ablate, patch) and scan units for their effect."""

from . import gradients as _gradients  # registers extract(..., gradients=) with capture
from .context import Intervention, intervene
from .edits import Edit, ablate, patch
from .scan import ablation_scan

__all__ = ["Edit", "Intervention", "ablate", "ablation_scan", "intervene", "patch"]

del _gradients
