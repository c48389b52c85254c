"""A small pickle interpreter that builds only inert values, and charges for what it builds.

Python's C unpickler cannot be stopped by a budget, so this module reads the
opcodes itself (as torch's ``_weights_only_unpickler`` does) and charges every
value as it is made:

* a value's **cost** is 1 for a scalar (1 per started 64 bytes of a str or
  bytes) and 1 + its children's costs for a container; a child is charged each
  time it is used, so a list shared 2**40 times costs 2**40 and is refused
  before anything walks it;
* its **depth** is how many containers nest inside it;
* a container is **sealed** once it is used as a child or fetched again from the
  memo: changing it afterwards is refused, which keeps costs exact and makes
  cycles impossible (no checkpoint needs one);
* calls (REDUCE, NEWOBJ) reach only the handlers of :mod:`allowlist`.

Scalar and memo opcodes are in :mod:`leaves`, calls in :mod:`calls`, the shared
state in :mod:`machine`.
"""

from __future__ import annotations

import pickle
import pickletools
import struct
from typing import Any

from .budget import BudgetExceededError, HashSpread, PickleBudget, RefusedOpcodeError
from .calls import CALL_OPCODES
from .leaves import LEAF_OPCODES
from .machine import (
    DICT,
    IMMUTABLE,
    LIST,
    SEALED,
    SET,
    WORK_EXCEEDED,
    Machine,
    Node,
    charge,
    check_sequence,
    collect,
    damaged,
    grow,
    new_node,
    pop_mark,
    truncated,
)

__all__ = ["run"]

_NAMES = {op.code.encode("latin1")[0]: op.name for op in pickletools.opcodes}
# Bytes an opcode's argument takes at least: fixed sizes, else its length prefix (pickletools' codes).
_PREFIX_BYTES = {-1: 1, -2: 1, -3: 4, -4: 4, -5: 8}
_ARGUMENT_BYTES = {
    op.code.encode("latin1")[0]: (op.arg.n if op.arg.n >= 0 else _PREFIX_BYTES.get(op.arg.n, 0))
    if op.arg
    else 0
    for op in pickletools.opcodes
}
_U64 = struct.Struct("<Q").unpack_from


def _target(m: Machine, kind: int, opcode: str) -> Node:
    """The open container on top of the stack that ``opcode`` may change."""
    node = m.stack[-1]
    if type(node) is not Node or node.kind != kind:
        raise RefusedOpcodeError(
            opcode, f"into a {type(node.value if type(node) is Node else node).__name__}"
        )
    if node.sealed:
        raise RefusedOpcodeError(opcode, SEALED)
    return node


def _hashed(m: Machine, node: Node | None, values: list, items: list) -> None:
    """Charge and check the keys about to be hashed (see ``HashSpread``)."""
    spread = (node.spread if node is not None else None) or HashSpread()
    for value, item in zip(values, items, strict=True):
        if type(value) is not str:
            if type(item) is Node:
                charge(m, item.cost)
            spread.add(value)
    if node is not None:
        node.spread = spread


def _mark(m, pos):
    m.metastack.append(m.stack)
    m.below += len(m.stack)
    m.stack = []
    if len(m.metastack) > m.budget.max_depth:
        raise BudgetExceededError("nesting deeper than", m.budget.max_depth, len(m.metastack), " containers")
    return pos


def _tuple_of(m: Machine, items: list) -> Any:
    if not items:
        return ()
    check_sequence(m, len(items))
    cost, depth = 1, 0
    for index, item in enumerate(items):  # collect(), inlined: the most frequent container
        if type(item) is Node:
            item.sealed = True
            cost += item.cost
            if item.depth > depth:
                depth = item.depth
            items[index] = item.value
        else:
            cost += 1
    if cost > m.budget.max_cost or depth >= m.budget.max_depth:
        return new_node(m, None, cost, depth + 1)  # raises the budget's error
    return Node(tuple(items), cost, depth + 1, IMMUTABLE)


def _tuple(m, pos):
    items = pop_mark(m)
    m.stack.append(_tuple_of(m, items))
    return pos


def _tuple_n(count: int):
    def op(m, pos):
        stack = m.stack
        if len(stack) < count:
            raise IndexError("stack underflow")
        items = stack[-count:]
        del stack[-count:]
        stack.append(_tuple_of(m, items))
        return pos

    return op


def _container(factory, kind: int, from_mark: bool):
    """EMPTY_LIST/DICT/SET, and protocol 0's LIST/DICT that take their items from a MARK."""

    def op(m, pos):
        node = Node(factory(), 1, 1, kind)
        if from_mark:
            items = pop_mark(m)
            (_fill_dict if kind == DICT else _fill_list)(m, node, items, _NAMES[m.data[pos - 1]])
        m.stack.append(node)
        return pos

    return op


def _constant(value):
    def op(m, pos):
        m.stack.append(value)
        return pos

    return op


def _fill_list(m: Machine, node: Node, items: list, _opcode: str) -> None:
    values, cost, depth = collect(items)
    grow(m, node, len(values), cost, depth)
    node.value.extend(values)


def _fill_dict(m: Machine, node: Node, items: list, opcode: str) -> None:
    if len(items) & 1:
        raise damaged(f"{opcode} with a key but no value")
    values, cost, depth = collect(items)
    grow(m, node, len(values) >> 1, cost, depth)
    _hashed(m, node, values[::2], items[::2])
    target = node.value
    for index in range(0, len(values), 2):
        target[values[index]] = values[index + 1]


def _append(m, pos):
    item = m.stack.pop()
    _fill_list(m, _target(m, LIST, "APPEND"), [item], "APPEND")
    return pos


def _appends(m, pos):
    items = pop_mark(m)
    _fill_list(m, _target(m, LIST, "APPENDS"), items, "APPENDS")
    return pos


def _setitem(m, pos):
    stack = m.stack
    value = stack.pop()
    key = stack.pop()
    _fill_dict(m, _target(m, DICT, "SETITEM"), [key, value], "SETITEM")
    return pos


def _setitems(m, pos):
    items = pop_mark(m)
    _fill_dict(m, _target(m, DICT, "SETITEMS"), items, "SETITEMS")
    return pos


def _additems(m, pos):
    items = pop_mark(m)
    node = _target(m, SET, "ADDITEMS")
    values, cost, depth = collect(items)
    grow(m, node, len(values), cost, depth)
    _hashed(m, node, values, items)
    node.value.update(values)
    return pos


def _frozenset(m, pos):
    items = pop_mark(m)
    check_sequence(m, len(items))
    values, cost, depth = collect(items)
    node = new_node(m, None, 1 + cost, 1 + depth)
    _hashed(m, None, values, items)
    node.value = frozenset(values)
    m.stack.append(node)
    return pos


def _pop(m, pos):
    if m.stack:
        m.stack.pop()
    else:
        pop_mark(m)
    return pos


def _pop_mark(m, pos):
    pop_mark(m)
    return pos


def _dup(m, pos):
    m.stack.append(m.stack[-1])
    return pos


def _proto(m, pos):
    if m.data[pos] > pickle.HIGHEST_PROTOCOL:
        raise damaged(f"unsupported pickle protocol {m.data[pos]}")
    return pos + 1


def _frame(m, pos):
    if pos + 8 + _U64(m.data, pos)[0] > m.end:
        raise truncated()
    return pos + 8


def _stop(m, pos):
    m.result = m.stack.pop()
    return -1


def _refuse(name: str, reason: str):
    def op(_m, _pos):
        raise RefusedOpcodeError(name, reason)

    return op


def _unknown(m, pos):
    raise damaged(f"unknown opcode 0x{m.data[pos - 1]:02x} at byte {pos - 1}")


def _table() -> tuple:
    ops = {
        **LEAF_OPCODES,
        **CALL_OPCODES,
        pickle.MARK: _mark,
        pickle.STOP: _stop,
        pickle.POP: _pop,
        pickle.POP_MARK: _pop_mark,
        pickle.DUP: _dup,
        pickle.NONE: _constant(None),
        pickle.NEWTRUE: _constant(True),
        pickle.NEWFALSE: _constant(False),
        pickle.EMPTY_TUPLE: _constant(()),
        pickle.TUPLE: _tuple,
        pickle.TUPLE1: _tuple_n(1),
        pickle.TUPLE2: _tuple_n(2),
        pickle.TUPLE3: _tuple_n(3),
        pickle.EMPTY_LIST: _container(list, LIST, False),
        pickle.EMPTY_DICT: _container(dict, DICT, False),
        pickle.EMPTY_SET: _container(set, SET, False),
        pickle.LIST: _container(list, LIST, True),
        pickle.DICT: _container(dict, DICT, True),
        pickle.APPEND: _append,
        pickle.APPENDS: _appends,
        pickle.SETITEM: _setitem,
        pickle.SETITEMS: _setitems,
        pickle.ADDITEMS: _additems,
        pickle.FROZENSET: _frozenset,
        pickle.PROTO: _proto,
        pickle.FRAME: _frame,
        pickle.PERSID: _refuse("PERSID", "(a text persistent id): torch writes only binary ones"),
        pickle.INST: _refuse("INST", "(creates an instance of any class by name)"),
        pickle.OBJ: _refuse("OBJ", "(creates an instance of any class)"),
        pickle.BYTEARRAY8: _refuse("BYTEARRAY8", "(a bytearray: a mutable buffer no checkpoint needs)"),
        pickle.NEXT_BUFFER: _refuse("NEXT_BUFFER", "(out-of-band buffers are not part of a file)"),
        pickle.READONLY_BUFFER: _refuse("READONLY_BUFFER", "(out-of-band buffers are not part of a file)"),
    }
    for name in ("EXT1", "EXT2", "EXT4"):
        ops[getattr(pickle, name)] = _refuse(name, "(a global from the copyreg extension registry)")
    table = [_unknown] * 256
    for code, op in ops.items():
        table[code[0]] = op
    return tuple(table)


_TABLE = _table()


# Opcodes run between two checks of the work and the stack. Each opcode adds at most one
# value to the stack, so a round never runs more opcodes than the stack has room for.
_ROUND = 4096


def _round_length(m: Machine) -> int:
    """How many opcodes may run before the next check; raises when the work or stack is spent."""
    budget = m.budget
    spare = budget.max_cost - m.work
    if spare <= 0:
        raise BudgetExceededError(WORK_EXCEEDED, budget.max_cost)
    room = budget.max_stack - m.below - len(m.stack)
    if room < 0:
        raise BudgetExceededError("more values on the stack than", budget.max_stack, budget.max_stack - room)
    return min(_ROUND, spare, room or 1)


def run(data, start: int, budget: PickleBudget) -> tuple[Any, int]:
    """Interpret the pickle at ``data[start:]``; returns (value, offset after its STOP).

    Every opcode costs 1 work: the loop runs them in rounds of at most ``_round_length``
    and adds each round to ``m.work``, so the budget bounds the time (each opcode takes time
    linear in the bytes it reads) and, with ``max_stack``, the memory a pickle can claim.
    A pickle is refused exactly when its total work is over ``max_cost``.

    Raises:
        pickle.UnpicklingError: damaged bytes; its subclasses for refused or too large content.
    """
    end = min(len(data), start + budget.max_pickle_bytes)
    m = Machine(data, end, budget)
    table, pos = _TABLE, start
    try:
        while True:
            steps = _round_length(m)
            for done in range(1, steps + 1):  # noqa: B007 (read after the loop)
                if pos >= end:
                    if end < len(data):
                        raise BudgetExceededError(
                            "a pickle longer than", budget.max_pickle_bytes, None, " bytes"
                        )
                    raise truncated()
                following = table[data[pos]](m, pos + 1)
                if following < 0:
                    break
                pos = following
            else:
                m.work += steps
                continue
            charge(m, done)  # the last round, up to STOP: the budget holds to the last opcode
            break
    except pickle.UnpicklingError:
        raise
    except struct.error as error:  # only reads of fixed-size arguments raise it
        raise truncated() from error
    except IndexError as error:
        raise _diagnosis(data, pos, end) from error
    except Exception as error:  # a check this reader lacks: still a refusal, never a crash
        raise damaged(f"{type(error).__name__} at byte {pos} ({_NAMES.get(data[pos], '?')})") from error
    result = m.result
    return (result.value if type(result) is Node else result), pos + 1


def _diagnosis(data, pos: int, end: int) -> pickle.UnpicklingError:
    """Why an opcode read past its data or its stack: truncation or a missing operand."""
    name = _NAMES.get(data[pos], "?")
    if pos + 1 + _ARGUMENT_BYTES.get(data[pos], 0) > end:
        return truncated()
    return damaged(f"stack underflow at byte {pos} ({name})")
