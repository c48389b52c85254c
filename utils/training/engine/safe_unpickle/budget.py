"""The limits of the restricted unpickler, and the errors it raises.

Every limit is checked while the pickle is being read, before the work it would
cost is done: a length is compared before the bytes are decoded, a container's
cost before its keys are hashed. Each error is a ``pickle.UnpicklingError``, so
callers that already catch that catch these too.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass

__all__ = [
    "DEFAULT_BUDGET",
    "MAX_SAME_HASH",
    "BudgetExceededError",
    "HashSpread",
    "PickleBudget",
    "RefusedGlobalError",
    "RefusedOpcodeError",
    "printable",
]


@dataclass(frozen=True)
class PickleBudget:
    """How much one pickle may make the reader do. The defaults fit any real checkpoint."""

    # Containers inside containers; a GPT checkpoint nests about 6 deep.
    max_depth: int = 100
    # Objects built, a container costing 1 + its children's costs (a shared list used twice
    # counts twice). Also the cap on the work of reading one pickle: 1 per opcode run, 1 more
    # per text line read and per memo entry stored, plus each call's and each hashed key's
    # cost (see ``charge``). The memo and the stack so never hold more than this many values.
    max_cost: int = 4_000_000
    # Bytes of one integer (LONG1/LONG4; text INT/LONG by the digits this many bytes hold).
    max_int_bytes: int = 16
    # Bytes of one str or bytes value (4 MiB); its cost is 1 per started 64 bytes.
    max_str_bytes: int = 4 << 20
    # Elements in one list, tuple, dict or set.
    max_sequence: int = 1_000_000
    # Dimensions of one tensor (PyTorch itself stops at 64).
    max_tensor_dims: int = 64
    # Elements of one tensor or storage, and the largest size, stride or offset (2**48).
    max_numel: int = 1 << 48
    # Bytes of the pickle itself (a checkpoint's data.pkl is about 100 bytes per tensor).
    max_pickle_bytes: int = 64 << 20
    # Values on the stack, all MARK levels together: the items of a protocol 0-1 tuple, or of
    # a DICT opcode (keys and values), wait there until their MARK closes.
    max_stack: int = 2_000_000

    @property
    def max_int_digits(self) -> int:
        """Decimal digits of the largest integer ``max_int_bytes`` holds (for text INT/LONG)."""
        return len(str(1 << (8 * self.max_int_bytes)))


DEFAULT_BUDGET = PickleBudget()

_SHOWN_LIMIT = 200  # characters of a name from the file shown in a message


def printable(text: str, limit: int = _SHOWN_LIMIT) -> str:
    """``text`` safe to print: control and invisible characters escaped, long text cut.

    A crafted module name may carry ESC sequences or newlines; they must never
    reach a terminal or a log raw.
    """
    shown = text[:limit]
    if not shown.isprintable() or "\\" in shown:
        shown = "".join(
            c if c.isprintable() and c != "\\" else c.encode("unicode_escape").decode() for c in shown
        )
    return shown + ("..." if len(text) > limit else "")


class RefusedGlobalError(pickle.UnpicklingError):
    """The pickle refers to a global outside the allowlist (it would need arbitrary unpickling).

    Attributes:
        module, name: the names as found in the file (unescaped; do not print them raw).
        qualified_name: ``module.name`` escaped and shortened, safe to print.
    """

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name
        self.qualified_name = printable(f"{module}.{name}")
        super().__init__(f"refers to {self.qualified_name}, which a safe reader does not run")


class RefusedOpcodeError(pickle.UnpicklingError):
    """An instruction that needs code, a global registry, or changes an object it may not touch."""

    def __init__(self, opcode: str, reason: str) -> None:
        self.opcode = opcode
        super().__init__(f"refused: {opcode} {reason}")


class BudgetExceededError(pickle.UnpicklingError):
    """A value is larger than the budget allows; nothing of that size was built.

    Attributes:
        what: what was too big, in words ("nesting", "an integer", ...).
        limit: the budget's limit.
        found: the size found, or None where reading on to measure it would cost the work
            the budget prevents.
    """

    def __init__(self, what: str, limit: int, found: int | None = None, unit: str = "") -> None:
        self.what, self.limit, self.found = what, limit, found
        shown = f" (found {found:,}{unit})" if found is not None else ""
        super().__init__(f"refused: {what} {limit:,}{unit}{shown}")


# Keys of one dict (or elements of one set) allowed to share a hash value. str and bytes
# hashes are salted per process, but ints, floats and tuples hash predictably: a file can
# hold thousands of keys with one hash, and each insertion then compares with all of them.
MAX_SAME_HASH = 8


class HashSpread:
    """Counts the hash values of one dict's keys (or one set's elements) as they are added."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def add(self, key: object) -> None:
        """Note ``key``; raise when it is unhashable or too many keys share its hash."""
        if type(key) is str or type(key) is bytes:
            return
        try:
            value = hash(key)
        except TypeError:
            raise pickle.UnpicklingError(
                f"damaged pickle: a {type(key).__name__} used as a dict key or set element (unhashable)"
            ) from None
        seen = self.counts.get(value, 0) + 1
        if seen > MAX_SAME_HASH:
            raise BudgetExceededError(
                "more keys of one dict or set sharing a hash value than", MAX_SAME_HASH, seen
            )
        self.counts[value] = seen
