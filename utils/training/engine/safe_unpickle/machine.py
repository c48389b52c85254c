"""The state of the restricted unpickler and the bookkeeping every opcode shares.

Values with a cost above 1 travel on the stack inside a :class:`Node` that
carries the cost, the depth and whether the value may still change; plain
scalars travel bare and cost 1. See :mod:`vm` for the rules.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from typing import Any

from .budget import BudgetExceededError, HashSpread, PickleBudget
from .stubs import ObjectStub

__all__ = [
    "IMMUTABLE",
    "KINDS",
    "SEALED",
    "WORK_EXCEEDED",
    "Machine",
    "Node",
    "adopt",
    "charge",
    "collect",
    "damaged",
    "grow",
    "new_node",
]

IMMUTABLE, LIST, DICT, SET, STUB = 0, 1, 2, 3, 4
KINDS = {list: LIST, dict: DICT, OrderedDict: DICT, set: SET, ObjectStub: STUB}
SEALED = "into a container that was already used (a reference cycle, or a shared container changed later)"
TEXT_NODE = 64  # a str or bytes this long costs 1 per started 64 bytes, so it needs a Node
MISSING = object()


class Node:
    """A value on the stack with its cost and depth; a mutable one stays open until it is used."""

    __slots__ = ("value", "cost", "depth", "kind", "sealed", "spread")

    def __init__(self, value: Any, cost: int, depth: int, kind: int) -> None:
        self.value, self.cost, self.depth, self.kind = value, cost, depth, kind
        self.sealed = False
        self.spread: HashSpread | None = None


class Machine:
    """The interpreter's state for one pickle: the data, stacks, memo, budget and work done.

    ``work`` counts what reading costs (see :func:`charge`); the dispatch loop adds 1 per
    opcode run. ``below`` is how many values the MARK levels under ``stack`` hold.
    """

    __slots__ = ("data", "end", "stack", "metastack", "below", "memo", "budget", "work", "result")

    def __init__(self, data, end: int, budget: PickleBudget) -> None:
        self.data, self.end, self.budget = data, end, budget
        self.stack: list = []
        self.metastack: list[list] = []
        self.below = 0
        self.memo: dict[int, Any] = {}
        self.work = 0
        self.result: Any = None


def damaged(reason: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(f"damaged pickle: {reason}")


def truncated() -> pickle.UnpicklingError:
    return damaged("truncated (the data ends before the pickle's STOP)")


def collect(items) -> tuple[list, int, int]:
    """The bare values of ``items`` (sealing containers among them), their total cost and depth."""
    values, cost, depth = [], 0, 0
    append = values.append
    for item in items:
        if type(item) is Node:
            item.sealed = True
            cost += item.cost
            if item.depth > depth:
                depth = item.depth
            append(item.value)
        else:
            cost += 1
            append(item)
    return values, cost, depth


def new_node(m: Machine, value: Any, cost: int, depth: int, kind: int = IMMUTABLE) -> Node:
    """A Node for ``value``, once its cost and depth are checked against the budget."""
    budget = m.budget
    if cost > budget.max_cost:
        raise BudgetExceededError("a value expanding to more objects than", budget.max_cost, cost)
    if depth > budget.max_depth:
        raise BudgetExceededError("nesting deeper than", budget.max_depth, depth, " containers")
    return Node(value, cost, depth, kind)


WORK_EXCEEDED = "more opcodes run, memo entries stored, objects built or hashed than"


def charge(m: Machine, cost: int) -> None:
    """Count work that is not a child insertion (a call's result, a hashed key).

    Each opcode run and each memo entry stored count 1 too; the dispatch loop in :mod:`vm`
    adds those and checks the total, so that no opcode is free.
    """
    m.work += cost
    if m.work > m.budget.max_cost:
        raise BudgetExceededError(WORK_EXCEEDED, m.budget.max_cost)


def check_sequence(m: Machine, count: int) -> None:
    if count > m.budget.max_sequence:
        raise BudgetExceededError("a container with more elements than", m.budget.max_sequence, count)


def pop_mark(m: Machine) -> list:
    """The items pushed since the last MARK (which is removed)."""
    items = m.stack
    if not m.metastack:
        raise damaged("an opcode needs a MARK that is not there")
    m.stack = m.metastack.pop()
    m.below -= len(m.stack)
    return items


def push_text(m: Machine, value: str | bytes, size: int) -> None:
    m.stack.append(value if size < TEXT_NODE else Node(value, 1 + (size >> 6), 0, IMMUTABLE))


def get(m: Machine, index: int) -> None:
    """Push memo entry ``index``; a container fetched again is sealed (it now has two users)."""
    item = m.memo.get(index, MISSING)
    if item is MISSING:
        raise damaged(f"memo entry {index} is used before it is stored")
    if type(item) is Node:
        item.sealed = True
    m.stack.append(item)


def put(m: Machine, index: int) -> None:
    """Store the top of the stack as memo entry ``index``; an entry costs 1 work (it stays alive)."""
    if index < 0:
        raise damaged("a negative memo index")
    m.memo[index] = m.stack[-1]
    m.work += 1


def grow(m: Machine, node: Node, count: int, cost: int, depth: int) -> None:
    """Check that ``count`` more children of ``cost`` and ``depth`` fit into ``node``; count them."""
    check_sequence(m, len(node.value) + count)
    adopt(m, node, cost, depth)


def adopt(m: Machine, node: Node, cost: int, depth: int) -> None:
    """Add children of ``cost`` and ``depth`` to ``node``'s, within the budget."""
    node.cost += cost
    if node.cost > m.budget.max_cost:
        raise BudgetExceededError("a value expanding to more objects than", m.budget.max_cost, node.cost)
    if depth >= node.depth:
        node.depth = depth + 1
        if node.depth > m.budget.max_depth:
            raise BudgetExceededError("nesting deeper than", m.budget.max_depth, node.depth, " containers")
