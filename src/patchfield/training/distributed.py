"""Transitional: the process-group helpers live in :mod:`patchfield.utils.distributed`.

Only ``training/loop.py`` still imports them from here; once its import names ``..utils.distributed`` this module
is deleted.
"""

from ..utils.distributed import DistEnv, all_gather_objects, all_reduce_sum, distributed_env

__all__ = ["DistEnv", "all_gather_objects", "all_reduce_sum", "distributed_env"]
