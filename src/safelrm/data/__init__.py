"""Prompt data: evaluation benchmarks, training sets and the train/eval overlap check."""

from safelrm.data.benchmarks import (
    BENCHMARKS,
    list_benchmarks,
    load_benchmark,
    register_benchmark,
)
from safelrm.data.overlap import (
    OverlapPair,
    OverlapReport,
    filter_overlapping,
    find_overlaps,
    normalize,
)
from safelrm.data.paths import data_root
from safelrm.data.prompts import load_prompt_file
from safelrm.data.records import Kind, PromptRecord
from safelrm.data.tables import subsample
from safelrm.data.train_sets import (
    TRAIN_SETS,
    combine,
    list_train_sets,
    load_prompts,
    load_train_set,
    register_train_set,
)

__all__ = [
    "BENCHMARKS",
    "TRAIN_SETS",
    "Kind",
    "OverlapPair",
    "OverlapReport",
    "PromptRecord",
    "combine",
    "data_root",
    "filter_overlapping",
    "find_overlaps",
    "list_benchmarks",
    "list_train_sets",
    "load_benchmark",
    "load_prompt_file",
    "load_prompts",
    "load_train_set",
    "normalize",
    "register_benchmark",
    "register_train_set",
    "subsample",
]
