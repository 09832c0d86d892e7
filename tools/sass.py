"""Static reading of SASS (NVIDIA GPU machine code): ``nvdisasm -c`` and ``cuobjdump -res-usage`` text.

Used by ``cuda_report.py``: per kernel the resources ptxas gave it (registers, stack,
shared memory) and the instruction mix of its per-element loop. Only text is parsed here,
so this module is testable on canned snippets without a CUDA toolkit.

Vocabulary. A *loop* is the address range from a backward branch's target (the loop head)
to the branch (the latch). The *hot loop* of a kernel is its innermost loop with the most
instructions (a kernel without loops has its whole body as the hot region). The *store
loop* is the innermost loop holding a global store; its *store path* is the longest
branch-free path from head to latch that executes a store, so "instructions per output
byte" = instructions on that path / bytes it stores. With several innermost store loops
the largest one counts.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

_INSTRUCTION = re.compile(
    r"^\s*/\*(?P<addr>[0-9a-f]+)\*/\s+(?P<pred>@!?U?P[T0-9]+\s+)?(?P<opcode>[A-Z][A-Z0-9_.]*)"
    r"(?P<operands>[^;]*);"
)
_LABEL = re.compile(r"^(?P<name>[.$\w]+):\s*$")
_SECTION = re.compile(r"^\s*\.section\s+\.text\.(?P<name>[^,\s]+)")
_TARGET = re.compile(r"`\((?P<label>[^)]+)\)")
_RESOURCES = re.compile(r"^\s*Function (?P<name>\S+):\s*$")
_RESOURCE_FIELD = re.compile(r"(?P<key>[A-Z_]+(?:\[\d+\])?):(?P<value>\d+)")

INT64_DIVISION = re.compile(r"(div|rem)_[su]64")
FP64_OPCODES = {"DADD", "DMUL", "DFMA", "DSETP", "DMNMX", "DSET", "DRND"}


@dataclasses.dataclass(frozen=True)
class Instruction:
    addr: int
    opcode: str  # with modifiers, e.g. "STG.E.U8"
    operands: str
    predicated: bool

    @property
    def root(self) -> str:
        return self.opcode.split(".")[0]

    @property
    def target(self) -> Optional[str]:
        """Label a branch or call jumps to."""
        match = _TARGET.search(self.operands)
        return match.group("label") if match else None

    @property
    def is_branch(self) -> bool:
        return self.root in ("BRA", "JMP", "BRX", "JMX")

    @property
    def ends_flow(self) -> bool:
        """Control never falls through to the next instruction."""
        return not self.predicated and self.root in ("BRA", "JMP", "BRX", "JMX", "EXIT", "RET")


@dataclasses.dataclass
class Function:
    name: str  # mangled
    instructions: List[Instruction]
    labels: Dict[str, int]  # label -> address

    def index_of(self, addr: int) -> int:
        for i, inst in enumerate(self.instructions):
            if inst.addr >= addr:
                return i
        return len(self.instructions)

    def between(self, first: int, last: int) -> List[Instruction]:
        """Instructions with first <= addr <= last."""
        return [inst for inst in self.instructions if first <= inst.addr <= last]

    def subroutine(self, label: str) -> List[Instruction]:
        """A called subroutine: from its label to its first RET."""
        start = self.labels.get(label)
        if start is None:
            return []
        body = []
        for inst in self.instructions[self.index_of(start) :]:
            body.append(inst)
            if inst.root == "RET":
                break
        return body


@dataclasses.dataclass(frozen=True)
class Loop:
    head: int  # address of the first instruction
    latch: int  # address of the backward branch

    def contains(self, other: "Loop") -> bool:
        return self.head <= other.head and other.latch <= self.latch and self != other


def parse_disassembly(text: str) -> Dict[str, Function]:
    """``nvdisasm -c`` text (labelled branch targets) -> functions by mangled name."""
    functions: Dict[str, Function] = {}
    current: Optional[Function] = None
    for line in text.splitlines():
        section = _SECTION.match(line)
        if section:
            current = functions.setdefault(section.group("name"), Function(section.group("name"), [], {}))
            continue
        if current is None:
            continue
        inst = _INSTRUCTION.match(line)
        if inst:
            current.instructions.append(
                Instruction(
                    int(inst.group("addr"), 16),
                    inst.group("opcode"),
                    inst.group("operands").strip(),
                    inst.group("pred") is not None,
                )
            )
            continue
        label = _LABEL.match(line.strip())
        if label:
            # a label names the next instruction
            next_addr = current.instructions[-1].addr + 16 if current.instructions else 0
            current.labels[label.group("name")] = next_addr
    return functions


def parse_resource_usage(text: str) -> Dict[str, Dict[str, int]]:
    """``cuobjdump -res-usage`` text -> {mangled name: {"REG": .., "STACK": .., "SHARED": ..,
    "LOCAL": .., ...}}."""
    usage: Dict[str, Dict[str, int]] = {}
    name = None
    for line in text.splitlines():
        header = _RESOURCES.match(line)
        if header:
            name = header.group("name")
            continue
        if name is not None and "REG:" in line:
            usage[name] = {m.group("key"): int(m.group("value")) for m in _RESOURCE_FIELD.finditer(line)}
            name = None
    return usage


def loops(function: Function) -> List[Loop]:
    """Every backward branch as a loop, in address order."""
    found = set()
    for inst in function.instructions:
        if inst.is_branch and inst.target in function.labels:
            head = function.labels[inst.target]
            if head <= inst.addr:
                found.add(Loop(head, inst.addr))
    return sorted(found, key=lambda loop: (loop.head, loop.latch))


def innermost(all_loops: Sequence[Loop]) -> List[Loop]:
    return [loop for loop in all_loops if not any(loop.contains(other) for other in all_loops)]


def outermost(all_loops: Sequence[Loop]) -> List[Loop]:
    return [loop for loop in all_loops if not any(other.contains(loop) for other in all_loops)]


def hot_loop(function: Function) -> Optional[Loop]:
    """The innermost loop with the most instructions (first one on ties); None without loops."""
    candidates = innermost(loops(function))
    if not candidates:
        return None
    return max(candidates, key=lambda loop: (len(function.between(loop.head, loop.latch)), -loop.head))


def kernel_body(function: Function) -> List[Instruction]:
    """The kernel's own instructions: up to the first label of a called subroutine."""
    starts = [addr for label, addr in function.labels.items() if label.startswith("$")]
    end = min(starts) if starts else float("inf")
    return [inst for inst in function.instructions if inst.addr < end]


def per_element_region(function: Function) -> List[Instruction]:
    """Code that runs once per element or more often: every outermost loop (the grid-stride
    loops), or the whole kernel body when it has none (one element per thread)."""
    outer = outermost(loops(function))
    if not outer:
        return kernel_body(function)
    return [inst for loop in outer for inst in function.between(loop.head, loop.latch)]


def with_callees(function: Function, region: Sequence[Instruction]) -> List[Instruction]:
    """The region plus the body of every subroutine it calls (one level is what nvcc emits)."""
    out = list(region)
    for label in sorted({inst.target for inst in region if inst.root == "CALL" and inst.target}):
        out += function.subroutine(label)
    return out


def access_bits(opcode: str) -> int:
    """Width in bits of a load/store from its modifiers (.U8 .S16 .64 .128; default 32)."""
    parts = opcode.split(".")[1:]
    for part, bits in (("128", 128), ("64", 64), ("U16", 16), ("S16", 16), ("U8", 8), ("S8", 8)):
        if part in parts:
            return bits
    return 32


def is_fp64(inst: Instruction) -> bool:
    parts = inst.opcode.split(".")
    return inst.root in FP64_OPCODES or "F64" in parts or (inst.root == "MUFU" and "64H" in parts)


def instruction_mix(function: Function, region: Sequence[Instruction]) -> Dict[str, object]:
    """Instruction mix of ``region`` and of the subroutines it calls: instructions (own and
    in callees), fp64, int64 division/remainder calls, inline integer-division sequences,
    global/shared/local loads and stores by width in bits, atomics, barriers, shuffles."""
    code = with_callees(function, region)
    calls = Counter(inst.target for inst in region if inst.root == "CALL")
    mix: Dict[str, object] = {
        "instructions": len(region),
        "callee_instructions": len(code) - len(region),
        "fp64": sum(is_fp64(inst) for inst in code),
        "int64_div_calls": sum(n for name, n in calls.items() if name and INT64_DIVISION.search(name)),
        # the fast path of an integer division starts from a reciprocal of the divisor
        "int_div_sequences": sum(inst.root == "I2F" and "RP" in inst.opcode.split(".") for inst in code),
        "calls": {_short_callee(name): n for name, n in sorted(calls.items())},
    }
    for kind, roots in (
        ("global_load", ("LDG",)),
        ("global_store", ("STG",)),
        ("generic_load", ("LD",)),
        ("generic_store", ("ST",)),
        ("shared_load", ("LDS", "LDSM")),
        ("shared_store", ("STS",)),
        ("local_load", ("LDL",)),
        ("local_store", ("STL",)),
    ):
        widths = Counter(access_bits(inst.opcode) for inst in code if inst.root in roots)
        mix[kind] = {str(bits): n for bits, n in sorted(widths.items())}
    mix["atomics"] = sum(inst.root in ("ATOM", "ATOMG", "ATOMS", "RED", "REDG") for inst in code)
    mix["barriers"] = sum(inst.root in ("BAR", "WARPSYNC") for inst in code)
    mix["shuffles_votes"] = sum(inst.root in ("SHFL", "VOTE", "VOTEU", "MATCH", "REDUX") for inst in code)
    return mix


def _short_callee(label: Optional[str]) -> str:
    if not label:
        return "?"
    return re.sub(r"^\$__internal_\d+_\$__cuda_", "", label)


def _blocks(function: Function, loop: Loop) -> List[List[Instruction]]:
    """Basic blocks of a loop body, in address order."""
    body = function.between(loop.head, loop.latch)
    leaders = {loop.head} | {addr for addr in function.labels.values() if loop.head <= addr <= loop.latch}
    for inst in body:
        if inst.is_branch or inst.root in ("EXIT", "RET"):
            leaders.add(inst.addr + 16)
    blocks: List[List[Instruction]] = []
    for inst in body:
        if inst.addr in leaders or not blocks:
            blocks.append([])
        blocks[-1].append(inst)
    return blocks


def store_path(function: Function, loop: Loop, store_roots: Tuple[str, ...] = ("STG", "ST")) -> Tuple[int, int]:
    """Longest path from the loop head to its latch that executes a global store, as
    (instructions, bytes stored); (0, 0) if no such path. Forward edges only: inner loops
    count once, a call counts as one instruction."""
    blocks = _blocks(function, loop)
    index = {block[0].addr: i for i, block in enumerate(blocks)}
    # reach[i][stored]: longest (instructions, bytes) from the head to the start of block i
    reach: List[Dict[bool, Optional[Tuple[int, int]]]] = [{False: None, True: None} for _ in blocks]
    reach[0][False] = (0, 0)
    best = (0, 0)
    for i, block in enumerate(blocks):
        stored_bytes = sum(access_bits(inst.opcode) // 8 for inst in block if inst.root in store_roots)
        leaving: Dict[bool, Optional[Tuple[int, int]]] = {False: None, True: None}
        for stored, path in reach[i].items():
            if path is not None:
                flag = stored or stored_bytes > 0
                leaving[flag] = max(leaving[flag] or (-1, 0), (path[0] + len(block), path[1] + stored_bytes))
        last = block[-1]
        if last.addr == loop.latch:
            if leaving[True] is not None:
                best = max(best, leaving[True])
            continue
        successors = []
        if last.is_branch and last.target in function.labels:
            target = function.labels[last.target]
            if target > last.addr and target in index:
                successors.append(index[target])
        if not last.ends_flow and i + 1 < len(blocks):
            successors.append(i + 1)
        for j in successors:
            for flag, path in leaving.items():
                if path is not None:
                    reach[j][flag] = max(reach[j][flag] or (-1, 0), path)
    return best


def store_loop(function: Function) -> Optional[Loop]:
    """The innermost loop that holds a global store (the one with the most instructions
    when there are several, e.g. a zero-fill loop beside the per-pixel loop)."""
    candidates = [
        loop
        for loop in innermost(loops(function))
        if any(inst.root in ("STG", "ST") for inst in function.between(loop.head, loop.latch))
    ]
    candidates.sort(key=lambda loop: -len(function.between(loop.head, loop.latch)))
    if not candidates:
        # a store loop may hold an inner loop (e.g. over channels): take the smallest one
        candidates = [
            loop
            for loop in loops(function)
            if any(inst.root in ("STG", "ST") for inst in function.between(loop.head, loop.latch))
        ]
        candidates.sort(key=lambda loop: loop.latch - loop.head)
        candidates = candidates[:1]
    return candidates[0] if candidates else None


def demangle(names: Sequence[str]) -> Dict[str, str]:
    """Mangled -> readable short names ("paste_masks<float>"); mangled names kept if
    c++filt is missing."""
    try:
        out = subprocess.run(
            ["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        out = list(names)
    return {name: short_name(full) for name, full in zip(names, out)}


def short_name(demangled: str) -> str:
    """ "void yf::kernels::(anonymous namespace)::paste_masks<float>(float const*, ...)" ->
    "paste_masks<float>"."""
    text = re.sub(r"^void\s+", "", demangled).replace("(anonymous namespace)::", "")
    depth = 0
    for i, ch in enumerate(text):  # cut the parameter list: the first "(" outside <...>
        depth += {"<": 1, ">": -1}.get(ch, 0)
        if ch == "(" and depth == 0:
            text = text[:i]
            break
    return re.sub(r"^(?:\w+::)+", "", text)
