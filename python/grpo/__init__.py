# SPDX-License-Identifier: Apache-2.0
"""grpo: the GRPO / DeepSeek-R1 core (C++20 headers) for Python.

- ``grpo.rewards``: math verifier, rule rewards, sandboxed code execution, batch scoring, TRL /
  verl adapters (no torch).
- ``grpo.experience``: KL in the reward, masked whitening, OpenRLHF's advantages / approx KL /
  metrics, verl metrics of a loss call (numpy or torch, no torch needed).
- ``grpo.ops``: losses, KL, advantages, fused log-prob / entropy and GRPO steps, distillation as
  torch custom ops (needs torch; imported lazily).
- ``grpo.trl``: a GRPOTrainer subclass whose loss is grpo's (needs trl); ``grpo.verl``: verl's
  ``compute_score``.

Errors raised by the C++ core are ``grpo.GrpoError`` (a ValueError) whose message starts with a
stable id such as ``[grpo.shape_mismatch]``; ``grpo.error_id(e)`` returns it.
"""
import importlib as _importlib
import re as _re

from . import _C
from . import experience
from . import rewards
from ._C import GrpoError

__version__ = "0.1.0"
built_with_cuda: bool = bool(_C.built_with_cuda)

__all__ = ["GrpoError", "error_id", "rewards", "experience", "ops", "trl", "verl",
           "built_with_cuda",
           "__version__"]

_ID = _re.compile(r"\[grpo\.([a-z_]+)\]")


def error_id(e: BaseException) -> str:
    """The stable id of a grpo error ("shape_mismatch", "bad_option", ...), or "" if none."""
    m = _ID.search(str(e))
    return m.group(1) if m else ""


def __getattr__(name):
    # ops needs torch, trl needs trl: import them on first use so `import grpo` works without.
    if name in ("ops", "trl", "verl"):
        try:
            return _importlib.import_module("." + name, __name__)
        except ImportError as e:
            raise ImportError(f"grpo.{name} needs an optional dependency: {e}") from e
    raise AttributeError(f"module 'grpo' has no attribute {name!r}")
