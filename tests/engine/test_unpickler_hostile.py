"""The restricted unpickler against crafted pickles: each is refused at once, with its reason.

Every pickle here is a few hundred bytes or less (built in the test); each would hang,
exhaust memory, crash a later reader or run code if it were read naively.
"""

from __future__ import annotations

import collections
import copyreg
import os
import pickle
import pickletools
import struct
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from utils.training.engine.safe_unpickle import (
    BudgetExceededError,
    PickleBudget,
    RefusedGlobalError,
    RefusedOpcodeError,
    TensorStub,
    load_structure,
    walk_leaves,
)

from .unpickle_bytes import (
    P2,
    P4,
    FakeStorage,
    FakeTensor,
    get,
    nested_lists,
    put,
    shared_list_bomb,
    small_int,
    stack_global,
    text,
    torch_like,
)


def _damage(data: bytes, match: str) -> None:
    """A plain UnpicklingError (damage), not one of the refusal subclasses."""
    with pytest.raises(pickle.UnpicklingError, match=match) as caught:
        load_structure(data)
    assert type(caught.value) is pickle.UnpicklingError


class TestLoadStructureBudgets:
    def test_shared_list_doubling_bomb_is_refused_by_its_cost(self):
        data = shared_list_bomb(40)
        assert len(data) < 400
        with pytest.raises(
            BudgetExceededError, match=r"^refused: a value expanding to more objects than 4,000,000"
        ):
            load_structure(data)

    def test_sharing_costs_what_a_walk_of_it_costs(self):
        # 10 levels of doubling: 2**11 - 1 = 2,047 lists when every reference is followed
        obj = load_structure(shared_list_bomb(10), budget=PickleBudget(max_cost=2_047))
        assert obj[0] is obj[1]  # still shared in the result
        assert walk_leaves(obj, int, max_nodes=2_047) == 0
        with pytest.raises(BudgetExceededError, match="more values than 2,046"):
            walk_leaves(obj, int, max_nodes=2_046)
        with pytest.raises(
            BudgetExceededError, match=r"expanding to more objects than 2,046 \(found 2,047\)"
        ):
            load_structure(shared_list_bomb(10), budget=PickleBudget(max_cost=2_046))

    def test_deep_nesting_is_refused_without_recursion(self):
        with pytest.raises(BudgetExceededError, match=r"^refused: nesting deeper than 100 containers"):
            load_structure(nested_lists(5_000))

    def test_deep_marks_are_refused(self):
        with pytest.raises(BudgetExceededError, match="nesting deeper than 100 containers"):
            load_structure(P2 + pickle.MARK * 10_000 + pickle.STOP)

    def test_nesting_within_the_budget_loads(self):
        obj = load_structure(nested_lists(100))
        for _ in range(99):
            (obj,) = obj
        assert obj == []

    def test_huge_long4_is_refused_from_its_header(self):
        data = P2 + pickle.LONG4 + struct.pack("<i", 2**31 - 1) + pickle.STOP
        with pytest.raises(
            BudgetExceededError, match=r"an integer longer than 16 bytes \(found 2,147,483,647 bytes\)"
        ):
            load_structure(data)

    def test_long1_over_the_limit_is_refused(self):
        with pytest.raises(BudgetExceededError, match="an integer longer than 16 bytes"):
            load_structure(P2 + pickle.LONG1 + bytes([17]) + b"\x01" * 17 + pickle.STOP)

    def test_text_int_with_a_million_digits_is_refused(self):
        data = pickle.INT + b"7" * 10**6 + b"\n" + pickle.STOP
        with pytest.raises(BudgetExceededError, match="an integer with more digits than 39"):
            load_structure(data)

    def test_largest_allowed_integers_load(self):
        assert load_structure(pickle.dumps([2**127 - 1, -(2**127)], protocol=2)) == [2**127 - 1, -(2**127)]
        assert load_structure(pickle.dumps(2**100, protocol=0)) == 2**100

    def test_huge_string_header_is_refused_before_reading(self):
        data = P2 + pickle.BINUNICODE + struct.pack("<I", 3 << 30) + b"x" + pickle.STOP
        with pytest.raises(
            BudgetExceededError, match=r"a string longer than 4,194,304 bytes \(found 3,221,225,472"
        ):
            load_structure(data)

    def test_many_uses_of_one_long_string_cost_its_length_each_time(self):
        words = text("9" * 4000) + put(0) + pickle.MARK + get(0) * 5000 + pickle.TUPLE
        with pytest.raises(BudgetExceededError, match="expanding to more objects than 100,000"):
            load_structure(P2 + words + pickle.STOP, budget=PickleBudget(max_cost=100_000))

    def test_re_encoding_one_string_many_times_is_charged(self):
        encode = stack_global("_codecs", "encode") + put(1)
        call = get(1) + get(0) + text("latin1") + pickle.TUPLE2 + pickle.REDUCE + pickle.POP
        data = P4 + text("x" * 60_000) + put(0) + encode + call * 300 + pickle.NONE + pickle.STOP
        with pytest.raises(BudgetExceededError, match="objects built or hashed than 100,000"):
            load_structure(data, budget=PickleBudget(max_cost=100_000))

    def test_wide_container_is_refused(self):
        with pytest.raises(
            BudgetExceededError, match=r"a container with more elements than 100 \(found 101\)"
        ):
            load_structure(pickle.dumps(list(range(101)), protocol=2), budget=PickleBudget(max_sequence=100))

    def test_keys_sharing_one_hash_are_refused(self):
        colliding = [1 + k * (2**61 - 1) for k in range(9)]
        assert len({hash(k) for k in colliding}) == 1
        for obj in (set(colliding), dict.fromkeys(colliding), frozenset(colliding)):
            for protocol in (2, 4):
                with pytest.raises(BudgetExceededError, match="sharing a hash value than 8 .found 9"):
                    load_structure(pickle.dumps(obj, protocol=protocol))

    def test_pickle_longer_than_the_budget_is_refused(self):
        data = pickle.dumps(list(range(1000)), protocol=2)
        with pytest.raises(BudgetExceededError, match="a pickle longer than 100 bytes"):
            load_structure(data, budget=PickleBudget(max_pickle_bytes=100))

    def test_memo_entries_count_against_the_work(self):
        # NONE MEMOIZE repeated: a 2-byte unit adds a memo entry; 64 MB of it were 32M entries (GBs)
        stored = {
            "MEMOIZE": P4 + (pickle.NONE + pickle.MEMOIZE) * 3_000,
            "BINPUT": P2 + b"".join(pickle.NONE + put(k % 256) for k in range(3_000)),
            "LONG_BINPUT at huge indices": P2
            + b"".join(pickle.NONE + put(2**32 - 1 - k) for k in range(3_000)),
            "PUT": b"".join(pickle.NONE + pickle.PUT + b"%d\n" % (10**60 + k) for k in range(3_000)),
        }
        for opcode, data in stored.items():
            data += pickle.NONE + pickle.STOP
            lines = 3_000 if opcode == "PUT" else 0
            work = sum(1 for _ in pickletools.genops(data)) + 3_000 + lines  # + 1 per entry stored
            assert load_structure(data, budget=PickleBudget(max_cost=work)) is None, opcode
            with pytest.raises(BudgetExceededError, match=f"memo entries stored, .* than {work - 1:,}$"):
                load_structure(data, budget=PickleBudget(max_cost=work - 1))

    def test_every_opcode_counts_against_the_work(self):
        data = P2 + (pickle.NONE + pickle.POP) * 3_000 + pickle.NONE + pickle.STOP
        assert load_structure(data, budget=PickleBudget(max_cost=6_003)) is None
        with pytest.raises(BudgetExceededError, match="^refused: more opcodes run, .* than 6,002$"):
            load_structure(data, budget=PickleBudget(max_cost=6_002))

    def test_values_left_on_the_stack_are_refused(self):
        with pytest.raises(
            BudgetExceededError, match=r"^refused: more values on the stack than 1,000 \(found 1,001\)"
        ):
            load_structure(P2 + pickle.NONE * 3_000 + pickle.STOP, budget=PickleBudget(max_stack=1_000))

    def test_values_under_marks_count_on_the_stack(self):
        # 3 MARK levels of 400 values each: no level alone is over the limit, together they are
        data = P2 + (pickle.NONE * 400 + pickle.MARK) * 3 + pickle.STOP
        with pytest.raises(BudgetExceededError, match="more values on the stack than 1,000"):
            load_structure(data, budget=PickleBudget(max_stack=1_000))

    def test_a_tuple_as_long_as_the_stack_allows_loads(self):
        data = P2 + pickle.MARK + pickle.NONE * 1_000 + pickle.TUPLE + pickle.STOP
        assert load_structure(data, budget=PickleBudget(max_stack=1_000)) == (None,) * 1_000


class TestLoadStructureTensorRecords:
    def test_size_of_strings_is_damage(self):
        digits = "9" * 4000
        data = torch_like({"w": FakeTensor((digits, digits), (1, 1), FakeStorage(4))})
        _damage(data, "size element 0 is a str, expected a non-negative int")

    def test_size_with_thousands_of_references_is_refused_by_its_dimensions(self):
        digits = "9" * 4000
        data = torch_like({"w": FakeTensor((digits,) * 3000, (1,) * 3000, FakeStorage(4))})
        with pytest.raises(
            BudgetExceededError, match=r"a tensor with more dimensions than 64 \(found 3,000\)"
        ):
            load_structure(data)

    def test_zero_dim_tensor_as_a_size_is_damage(self):
        scalar = FakeTensor((), (), FakeStorage(1, key="1"))
        _damage(
            torch_like({"w": FakeTensor((scalar, 2), (2, 1), FakeStorage(4))}), "size element 0 is a tensor"
        )

    def test_negative_stride_is_damage(self):
        _damage(torch_like({"w": FakeTensor((2,), (-1,), FakeStorage(4))}), "stride element 0 is -1")

    def test_view_beyond_its_storage_is_damage(self):
        data = torch_like({"w": FakeTensor((4, 4), (4, 1), FakeStorage(15))})
        _damage(data, "spans 16 elements of its storage '0', which holds 15")

    def test_too_many_elements_are_refused(self):
        data = torch_like({"w": FakeTensor((2**30, 2**30), (0, 0), FakeStorage(1))})
        with pytest.raises(
            BudgetExceededError,
            match=r"more elements than 281,474,976,710,656 \(found 1,152,921,504,606,846,976\)",
        ):
            load_structure(data)

    def test_empty_tensor_needs_no_storage_elements(self):
        stub = load_structure(torch_like({"w": FakeTensor((0, 5), (5, 1), FakeStorage(0))}))["w"]
        assert (stub.shape, stub.storage_extent, stub.numel) == ((0, 5), 0, 0)

    def test_storage_key_that_is_a_path_is_damage(self):
        _damage(torch_like({"w": FakeTensor((1,), (1,), FakeStorage(1, key="../x"))}), "storage key is not")

    def test_unknown_persistent_id_is_damage(self):
        class Writer(pickle.Pickler):
            def persistent_id(self, obj):
                return ("weird", 1) if obj == "p" else None

        import io

        buffer = io.BytesIO()
        Writer(buffer, protocol=2).dump(["p"])
        _damage(buffer.getvalue(), "persistent id that is not a torch storage")

    def test_text_persistent_id_is_refused(self):
        with pytest.raises(RefusedOpcodeError, match="^refused: PERSID"):
            load_structure(pickle.PERSID + b"0\n" + pickle.STOP)


class _SliceCounter(bytearray):
    """Pickle bytes that count how many bytes the reader copies out of them by slicing."""

    copied = 0

    def __getitem__(self, index):
        found = super().__getitem__(index)
        if isinstance(index, slice):
            self.copied += len(found)
        return found


# One of each opcode that reads a newline-terminated argument (protocol 0), each then POPped.
_TEXT_LINES = b"".join(
    op + b"0"
    for op in (
        b"S'abc'\n",
        b'S"a\\x41"\n',
        b"Vtext \\u20ac\n",
        b"I12\n",
        b"I01\n",
        b"L123456789012345678901234567890L\n",
        b"F2.5\n",
        b"ccollections\nOrderedDict\n",
        b"Np7\n",
        b"g7\n",
    )
)


class TestLoadStructureTextLines:
    def test_a_line_is_read_without_the_rest_of_the_data(self):
        # Each line was found in a copy of all the data after it (up to 16 MB for STRING and
        # UNICODE): a few MB of short lines then cost hours. 1 MB follows the STOP here.
        body = _TEXT_LINES * 50 + pickle.NONE + pickle.STOP
        data = _SliceCounter(body + b"x" * (1 << 20))
        assert load_structure(data) is None
        assert data.copied <= len(body)

    def test_lines_read_in_place_from_a_memoryview(self):
        # every length around the 64-byte steps a scan might take, and a line longer than a page
        obj = {"s": ["x" * n for n in (0, 1, 63, 64, 65, 127, 128, 129, 5_000)], "i": [1, -(2**100)]}
        obj["f"], obj["b"] = [0.1, float("inf")], [True, False]
        data = pickle.dumps(obj, protocol=0)
        assert load_structure(memoryview(data)) == obj == load_structure(data)
        assert load_structure(memoryview(_TEXT_LINES + pickle.NONE + pickle.STOP)) is None

    @pytest.mark.parametrize("wrap", [bytes, memoryview], ids=["bytes", "memoryview"])
    def test_a_line_without_its_newline_is_refused_at_its_limit(self, wrap):
        cases = {
            pickle.INT + b"7" * 10_000: "an integer with more digits than 39",
            pickle.FLOAT + b"1" * 10_000: "a text FLOAT longer than 64 characters",
            pickle.GLOBAL + b"m" * 10_000: "a GLOBAL name longer than 512 characters",
            pickle.UNICODE + b"u" * 2_000: "a string longer than 100",
            pickle.STRING + b"'" + b"s" * 2_000: "a string longer than 100",
        }
        for data, reason in cases.items():
            with pytest.raises(pickle.UnpicklingError, match=reason):
                load_structure(wrap(data + b"\n" + pickle.STOP), budget=PickleBudget(max_str_bytes=100))
            _damage(wrap(data[:20]), "truncated")  # the data ends within the limit

    def test_a_text_line_costs_one_more_work(self):
        # 400 text INTs and POPs, then NONE STOP: 802 opcodes and 400 lines
        data = (b"I1\n" + pickle.POP) * 400 + pickle.NONE + pickle.STOP
        assert load_structure(data, budget=PickleBudget(max_cost=1_202)) is None
        with pytest.raises(BudgetExceededError, match="more opcodes run"):
            load_structure(data, budget=PickleBudget(max_cost=1_201))


class TestLoadStructureRefusals:
    def test_bytearray_global_is_refused(self):
        data = pickle.dumps(bytearray(b"x" * 700), protocol=2)
        assert len(data) < 800
        with pytest.raises(RefusedGlobalError, match="builtins.bytearray"):
            load_structure(data)

    def test_bytearray_opcode_is_refused(self):
        with pytest.raises(RefusedOpcodeError, match="^refused: BYTEARRAY8"):
            load_structure(pickle.dumps(bytearray(b"xy"), protocol=5))

    def test_counter_and_its_build_are_refused_at_the_global(self):
        data = P2 + stack_global("collections", "Counter") + pickle.EMPTY_TUPLE + pickle.REDUCE
        data += (
            pickle.EMPTY_DICT
            + text("__getitem__")
            + small_int(1)
            + pickle.SETITEM
            + pickle.BUILD
            + pickle.STOP
        )
        with pytest.raises(RefusedGlobalError, match="collections.Counter"):
            load_structure(data)
        with pytest.raises(RefusedGlobalError, match="collections.Counter"):
            load_structure(pickle.dumps(collections.Counter(a=1), protocol=2))

    def test_build_on_an_allowed_container_is_refused(self):
        state = pickle.EMPTY_DICT + text("keys") + small_int(1) + pickle.SETITEM
        data = P2 + stack_global("collections", "OrderedDict") + pickle.EMPTY_TUPLE + pickle.REDUCE
        with pytest.raises(RefusedOpcodeError, match="^refused: BUILD on a OrderedDict: setting attributes"):
            load_structure(data + state + pickle.BUILD + pickle.STOP)
        with pytest.raises(RefusedOpcodeError, match="^refused: BUILD on a dict"):
            load_structure(P2 + pickle.EMPTY_DICT + state + pickle.BUILD + pickle.STOP)

    def test_empty_build_on_a_dict_is_a_no_op(self):
        assert load_structure(P2 + pickle.EMPTY_DICT + pickle.EMPTY_DICT + pickle.BUILD + pickle.STOP) == {}

    def test_build_on_a_tensor_is_refused(self):
        data = (
            torch_like(FakeTensor((1,), (1,), FakeStorage(1)))[:-1]
            + pickle.EMPTY_DICT
            + pickle.BUILD
            + pickle.STOP
        )
        with pytest.raises(RefusedOpcodeError, match="BUILD on a TensorStub"):
            load_structure(data)

    def test_changing_a_sealed_container_is_refused(self):
        # l = []; t = (l,); then APPEND into l again through the memo
        data = (
            P2
            + pickle.EMPTY_LIST
            + put(0)
            + pickle.TUPLE1
            + get(0)
            + small_int(1)
            + pickle.APPEND
            + pickle.STOP
        )
        with pytest.raises(
            RefusedOpcodeError, match="^refused: APPEND into a container that was already used"
        ):
            load_structure(data)

    @pytest.mark.parametrize("kind", ["list", "dict"])
    def test_self_reference_is_refused_as_a_cycle(self, kind):
        obj: list | dict = [] if kind == "list" else {}
        obj.append(obj) if kind == "list" else obj.__setitem__("me", obj)
        with pytest.raises(RefusedOpcodeError, match="a reference cycle"):
            load_structure(pickle.dumps(obj, protocol=2))

    def test_extension_registry_opcodes_are_refused(self):
        copyreg.add_extension("collections", "deque", 240)
        try:
            data = pickle.dumps(collections.deque, protocol=2)
        finally:
            copyreg.remove_extension("collections", "deque", 240)
        assert pickle.EXT1 in data
        with pytest.raises(RefusedOpcodeError, match="^refused: EXT1"):
            load_structure(data)
        for ext in (pickle.EXT2 + b"\x00\x01", pickle.EXT4 + b"\x00\x00\x01\x00"):
            with pytest.raises(RefusedOpcodeError, match="^refused: EXT[24]"):
                load_structure(P2 + ext + pickle.STOP)

    def test_inst_and_obj_are_refused(self):
        with pytest.raises(RefusedOpcodeError, match="^refused: INST"):
            load_structure(pickle.MARK + pickle.INST + b"os\nsystem\n" + pickle.STOP)
        with pytest.raises(RefusedOpcodeError, match="^refused: OBJ"):
            load_structure(pickle.MARK + pickle.GLOBAL + b"builtins\nobject\n" + pickle.OBJ + pickle.STOP)

    def test_code_is_refused_before_it_runs(self):
        class Runs:
            def __reduce__(self):
                return (print, ("pwned",))

        with pytest.raises(RefusedGlobalError, match="builtins.print, which a safe reader does not run"):
            load_structure(pickle.dumps({"x": Runs()}, protocol=2))

    def test_allowlisted_class_cannot_be_called_as_a_function(self):
        data = P2 + stack_global("torch", "Tensor") + pickle.EMPTY_TUPLE + pickle.REDUCE + pickle.STOP
        with pytest.raises(RefusedOpcodeError, match=r"^refused: REDUCE of <global torch.Tensor>"):
            load_structure(data)

    def test_control_characters_in_a_global_never_reach_the_message(self):
        data = P4 + stack_global("evil\x1b[2J\nmodule\u202e", "x\r") + pickle.STOP
        with pytest.raises(RefusedGlobalError) as caught:
            load_structure(data)
        message = str(caught.value)
        assert (
            "\x1b" not in message and "\n" not in message and "\r" not in message and "\u202e" not in message
        )
        assert r"evil\x1b[2J\nmodule\u202e.x\r" in message
        assert caught.value.qualified_name == r"evil\x1b[2J\nmodule\u202e.x\r"
        assert caught.value.module == "evil\x1b[2J\nmodule\u202e"  # the raw name, for code that needs it


class TestLoadStructureDamage:
    def test_truncated(self):
        data = pickle.dumps({"a": [1, 2, 3]}, protocol=2)
        for cut in (1, 5, len(data) - 1):
            _damage(data[:cut], "truncated")

    def test_empty(self):
        _damage(b"", "truncated")

    def test_unknown_opcode(self):
        _damage(P2 + b"\xff" + pickle.STOP, "unknown opcode 0xff at byte 2")

    def test_stack_underflow(self):
        _damage(P2 + pickle.APPEND + pickle.STOP, "stack underflow at byte 2 .APPEND.")

    def test_missing_mark(self):
        _damage(P2 + pickle.TUPLE + pickle.STOP, "needs a MARK")

    def test_bad_memo_index(self):
        _damage(P2 + get(7) + pickle.STOP, "memo entry 7 is used before it is stored")

    def test_unhashable_key(self):
        _damage(
            P2 + pickle.EMPTY_DICT + pickle.EMPTY_LIST + small_int(1) + pickle.SETITEM + pickle.STOP,
            "unhashable",
        )

    def test_bad_utf8(self):
        _damage(P2 + pickle.SHORT_BINUNICODE + b"\x02\xff\xfe" + pickle.STOP, "not UTF-8")

    def test_protocol_from_the_future(self):
        _damage(pickle.PROTO + b"\x09" + pickle.NONE + pickle.STOP, "unsupported pickle protocol 9")


# --- fuzzing: any bytes end in a value within the budget, or in an UnpicklingError -------------

_SMALL = PickleBudget(max_cost=20_000, max_sequence=5_000, max_str_bytes=10_000, max_pickle_bytes=1 << 16)
_SEEDS = [
    pickle.dumps(
        {"a": [1, 2.5, "x" * 70, b"y", (1, 2)], "s": {1, 2}, "f": frozenset({3}), "n": None}, protocol=p
    )
    for p in range(6)
] + [
    torch_like({"w": FakeTensor((2, 3), (3, 1), FakeStorage(6)), "o": collections.OrderedDict(a=1)}),
    shared_list_bomb(6),
    nested_lists(12),
]
_OPCODES = sorted({bytes([op.code.encode("latin1")[0]]) for op in __import__("pickletools").opcodes})


def _mutated(seed: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    data = bytearray(seed)
    for kind, where, value in edits:
        where %= max(len(data), 1)
        if kind == 0 and data:
            data[where] = value
        elif kind == 1:
            data.insert(where, value)
        elif data:
            del data[where]
    return bytes(data)


def _check(data: bytes) -> None:
    try:
        obj = load_structure(data, budget=_SMALL)
    except pickle.UnpicklingError:
        return
    # a returned value is within the budget: a full walk of it stays under max_cost values
    walk_leaves(obj, TensorStub, max_nodes=_SMALL.max_cost)


_FUZZ = settings(
    max_examples=150 * int(os.environ.get("FUZZ_SCALE", "1")),  # FUZZ_SCALE=100 for a long local run
    deadline=timedelta(seconds=5),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class TestLoadStructureFuzz:
    @_FUZZ
    @given(st.binary(max_size=300))
    def test_random_bytes(self, data):
        _check(data)

    @_FUZZ
    @given(
        st.sampled_from(_SEEDS),
        st.lists(
            st.tuples(st.integers(0, 2), st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=6
        ),
    )
    def test_mutated_pickles(self, seed, edits):
        _check(_mutated(seed, edits))

    @_FUZZ
    @given(st.lists(st.tuples(st.sampled_from(_OPCODES), st.binary(max_size=4)), max_size=60))
    def test_opcode_soup(self, parts):
        _check(P4 + b"".join(op + arg for op, arg in parts) + pickle.STOP)
