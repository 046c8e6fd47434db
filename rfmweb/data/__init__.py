"""Data sets: the synthetic BraTS-style glioma cohort (:mod:`rfmweb.data.cohort`), built from tumour
geometry (:mod:`~rfmweb.data.tumours`), MR appearance (:mod:`~rfmweb.data.appearance`) and acquisition
(:mod:`~rfmweb.data.acquisition`)."""

from .cohort import SPLIT_CODES, case_id, cohort_case, find_cases, make_cohort

__all__ = ["SPLIT_CODES", "case_id", "cohort_case", "find_cases", "make_cohort"]
