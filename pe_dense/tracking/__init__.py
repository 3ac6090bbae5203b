"""Video object tracking by label propagation on frozen PE features (DAVIS-2017, J&F)."""
from .davis import DavisError, list_sequences, load_sequence, read_annotation, write_annotation
from .evaluate import evaluate_davis, pe_extractor
from .metrics import evaluate_sequence, f_measure, j_measure, statistics
from .propagation import PropagationConfig, propagate, run_propagation
from .synthetic import make_davis

__all__ = [
    "j_measure", "f_measure", "statistics", "evaluate_sequence", "PropagationConfig", "propagate",
    "run_propagation", "evaluate_davis", "pe_extractor", "make_davis", "list_sequences", "load_sequence",
    "read_annotation", "write_annotation", "DavisError",
]
