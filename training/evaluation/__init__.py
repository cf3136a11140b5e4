"""The evaluation protocol of the thesis (section 4.3) with the extras of 5.4, 002 and 003."""

from muselens.training.evaluation.methods import METHODS, build_method
from muselens.training.evaluation.protocol import EvalOptions, MethodResult, evaluate_method

__all__ = ["METHODS", "EvalOptions", "MethodResult", "build_method", "evaluate_method"]
