"""Opcode counting for ``benchmarks.opcount_bench``, loaded by a child Python process whose
``PYTHONPATH`` starts with this directory (Python imports ``sitecustomize`` at start-up).

It does nothing unless ``VTWIST_OPCOUNT_OUT`` is set. Then SIGUSR1 starts counting, in the
main thread, the bytecode instructions each function executes (``sys.settrace`` with
``f_trace_opcodes``) and the calls made to it; SIGUSR2 stops and writes
``$VTWIST_OPCOUNT_OUT.<pid>``: one line per function, ``opcodes<TAB>calls<TAB>where``,
most opcodes first. Code generated at run time (a dataclass's ``__init__``) is named by
the class of its ``self``. The counts do not depend on the machine's speed or load.
"""

from __future__ import annotations

import collections
import os
import signal
import sys
from types import CodeType, FrameType
from typing import Any

_OUT = os.environ.get("VTWIST_OPCOUNT_OUT")

if _OUT:
    _ops: collections.Counter[Any] = collections.Counter()
    _calls: collections.Counter[Any] = collections.Counter()

    def _key(frame: FrameType) -> CodeType | tuple[str, str]:
        code = frame.f_code
        if code.co_filename == "<string>":
            return ("<string>", type(frame.f_locals.get("self")).__name__)
        return code

    def _trace(frame: FrameType, event: str, arg: object) -> Any:
        if event == "opcode":
            _ops[_key(frame)] += 1
        elif event == "call":
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
            _calls[_key(frame)] += 1
        return _trace

    def _start(signum: int, frame: FrameType | None) -> None:
        while frame is not None:  # the frames already running count from now on too
            frame.f_trace = _trace
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
            frame = frame.f_back
        sys.settrace(_trace)

    def _stop(signum: int, frame: FrameType | None) -> None:
        sys.settrace(None)
        with open(f"{_OUT}.{os.getpid()}", "w") as out:
            for key, n in _ops.most_common():
                if isinstance(key, tuple):
                    where = f"{key[0]}:{key[1]}"
                else:
                    where = f"{key.co_filename}:{key.co_firstlineno}:{key.co_name}"
                out.write(f"{n}\t{_calls[key]}\t{where}\n")

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
