"""Validation against published measurements: reference cases (cases), one case simulated
and compared (runner), the zero-shot / calibrated / leave-one-source-out readings (modes)
and the report (report)."""

from simtrain.analysis.validation.cases import (BASES, CLAIMS, REFERENCE_PATH, ReferenceCase, case_scenario,
                                                load_reference, select)
from simtrain.analysis.validation.modes import MODES
from simtrain.analysis.validation.report import ValidationReport, run_validation
from simtrain.analysis.validation.runner import CaseResult, Comparison, run_case

__all__ = ["BASES", "CLAIMS", "MODES", "REFERENCE_PATH", "CaseResult", "Comparison", "ReferenceCase", "ValidationReport",
           "case_scenario", "load_reference", "run_case", "run_validation", "select"]
