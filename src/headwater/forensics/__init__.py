"""Forensics from bundles alone: diff, verify, reproduce, bisect, lineage."""

from headwater.forensics.bisect import BisectReport, bisect_run, load_check
from headwater.forensics.diff import diff
from headwater.forensics.lineage import lineage
from headwater.forensics.reproduce import ReproduceReport, reproduce
from headwater.forensics.verify import VerifyReport, verify_store

__all__ = [
    "BisectReport", "ReproduceReport", "VerifyReport", "bisect_run", "diff", "lineage", "load_check",
    "reproduce", "verify_store",
]
