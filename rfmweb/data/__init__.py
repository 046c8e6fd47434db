"""Data sets: the synthetic BraTS-style glioma cohort (:mod:`rfmweb.data.cohort`)."""

from .cohort import SPLIT_CODES, case_id, cohort_case, find_cases, make_cohort

__all__ = ["SPLIT_CODES", "case_id", "cohort_case", "find_cases", "make_cohort"]
