"""Opcodes of the restricted unpickler that reach the allowlist: globals, calls, BUILD, storages.

REDUCE and NEWOBJ run only the handlers of :mod:`allowlist` (never a
real function or class); a call's result costs 1 + what its arguments cost, and
that cost is charged as work too, so re-running a cheap call on one big shared
argument is paid for every time. BUILD reaches only our own stubs (and accepts
an empty state, or a ``state_dict``'s ``_metadata``, on a dict).
"""

from __future__ import annotations

import pickle
from typing import Any

from .allowlist import apply_build, resolve
from .budget import RefusedOpcodeError
from .machine import (
    DICT,
    IMMUTABLE,
    KINDS,
    SEALED,
    STUB,
    Machine,
    Node,
    adopt,
    charge,
    collect,
    damaged,
    new_node,
)
from .stubs import ObjectStub
from .tensors import Global, persistent_storage

__all__ = ["CALL_OPCODES"]


def _call(m: Machine, handler, opens: bool, args: Any) -> Node:
    """Run an allowlisted handler on ``args``; its result costs 1 + what the arguments cost."""
    if type(args) is Node:
        cost, depth, args = args.cost + 1, args.depth, args.value
    else:
        cost, depth = 2, 0
    if type(args) is not tuple:
        raise damaged(f"call arguments are a {type(args).__name__}, expected a tuple")
    charge(m, cost)
    value = handler(args, m.budget)
    return new_node(m, value, cost, depth, KINDS.get(type(value), IMMUTABLE) if opens else IMMUTABLE)


def _reduce(m, pos):
    stack = m.stack
    args = stack.pop()
    func = stack[-1]
    if type(func) is not Global or func.call is None:
        raise RefusedOpcodeError("REDUCE", f"of {_shown(func)}: only allowlisted functions are called")
    stack[-1] = _call(m, func.call, func.opens, args)
    return pos


def _newobj(m, pos):
    stack = m.stack
    args = stack.pop()
    cls = stack[-1]
    if type(cls) is not Global or cls.new is None:
        raise RefusedOpcodeError("NEWOBJ", f"of {_shown(cls)}: only allowlisted classes are created")
    stack[-1] = _call(m, cls.new, cls.opens, args)
    return pos


def _newobj_ex(m, pos):
    kwargs = m.stack.pop()
    if not (type(kwargs) is Node and type(kwargs.value) is dict and not kwargs.value):
        raise RefusedOpcodeError("NEWOBJ_EX", "with keyword arguments")
    return _newobj(m, pos)


def _shown(value: Any) -> str:
    return repr(value) if type(value) is Global else f"a {type(value).__name__}"


def _build(m, pos):
    stack = m.stack
    state = stack.pop()
    node = stack[-1]
    target = node.value if type(node) is Node else node
    if type(node) is not Node or node.kind not in (DICT, STUB):
        why = "twice on one object" if isinstance(target, ObjectStub) else f"on a {type(target).__name__}"
        raise RefusedOpcodeError("BUILD", f"{why}: only checkpoint metadata objects take a state")
    if node.sealed:
        raise RefusedOpcodeError("BUILD", SEALED)
    values, cost, depth = collect([state])
    if apply_build(target, values[0]):
        adopt(m, node, cost, depth)
    if node.kind == STUB:
        node.kind = IMMUTABLE  # one BUILD per object, as a pickler writes it
    return pos


def _binpersid(m, pos):
    pid = m.stack.pop()
    m.stack.append(persistent_storage(pid.value if type(pid) is Node else pid, m.budget))
    return pos


def _stack_global(m, pos):
    stack = m.stack
    name = stack.pop()
    module = stack.pop()
    module, name = (x.value if type(x) is Node else x for x in (module, name))
    if type(module) is not str or type(name) is not str:
        raise damaged("STACK_GLOBAL of something other than two strings")
    stack.append(resolve(module, name))
    return pos


CALL_OPCODES = {
    pickle.REDUCE: _reduce,
    pickle.NEWOBJ: _newobj,
    pickle.NEWOBJ_EX: _newobj_ex,
    pickle.BUILD: _build,
    pickle.BINPERSID: _binpersid,
    pickle.STACK_GLOBAL: _stack_global,
}
