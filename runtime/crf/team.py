"""A team of threads inside one Numba kernel: shared work counters and phase barriers.

:mod:`tseg.runtime.crf.parallel` hands chunks to threads once per parallel region (about
20 us a hand-off here); mean field needs a dozen short phases per iteration (a pixel
pass, a gather, one blur per lattice axis), some of them tens of microseconds long. A
team kernel runs them all in one region: every thread of the region calls it once with
the same ``state`` array, takes the chunks of each phase from an atomic counter and waits
at the end of the phase until every chunk of it is done.

The waits never depend on a thread showing up: a thread that joins late finds the
phases done and leaves, and whoever is there does all the chunks. A waiting thread spins
briefly (a phase usually ends within microseconds), then yields its core, then sleeps,
so a loaded machine (an ONNX session beside the CRF) loses little to it.

``state`` is an int64 array of :func:`new_state`'s size: item 0 says the team stopped
(an error in some thread), then per phase a counter of chunks taken and one of chunks
done.
"""

import platform

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_STOPPED = 0  # state[0]: nonzero once a thread failed; everyone leaves
_SPINS = 2048  # pause instructions before a waiting thread yields its core
_YIELDS = 64  # then yields before it sleeps
_SLEEP_US = 20  # then sleeps of this length

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")


def new_state(phases: int) -> np.ndarray:
    """A fresh state for a team kernel of ``phases`` phases."""
    return np.zeros(1 + 2 * phases, np.int64)


def _item(context, builder, arrty, arr, index):
    a = context.make_array(arrty)(context, builder, arr)
    return builder.gep(a.data, [index])


def _is_int64_vector(arr) -> bool:
    return isinstance(arr, types.Array) and arr.dtype == types.int64 and arr.ndim == 1


@intrinsic
def fetch_add(typingctx, arr, index, value):
    """Atomically add ``value`` to arr[index]; returns the value before."""
    if not _is_int64_vector(arr):
        return None

    def codegen(context, builder, sig, args):
        pointer = _item(context, builder, sig.args[0], args[0], args[1])
        return builder.atomic_rmw("add", pointer, args[2], "seq_cst")

    return types.int64(arr, types.int64, types.int64), codegen


@intrinsic
def load(typingctx, arr, index):
    """arr[index], read atomically (another thread may be adding to it)."""
    if not _is_int64_vector(arr):
        return None

    def codegen(context, builder, sig, args):
        pointer = _item(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(pointer, "seq_cst", 8)

    return types.int64(arr, types.int64), codegen


@intrinsic
def pause(typingctx):
    """A spin-wait hint to the CPU (x86's PAUSE; nothing elsewhere)."""
    def codegen(context, builder, sig, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def _libc_call(typingctx, name, argument):
    """Call the C library's ``sched_yield()`` or ``usleep(argument)`` (``name`` a
    literal): a symbol the JIT links, unlike a ctypes pointer, so that kernels calling it
    can be cached on disk."""
    if not isinstance(name, types.StringLiteral):
        return None
    symbol = name.literal_value

    def codegen(context, builder, sig, args):
        if symbol == "sched_yield":
            fnty = ir.FunctionType(ir.IntType(32), [])
            call_args = []
        else:
            fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(32)])
            call_args = [builder.trunc(args[1], ir.IntType(32))]
        builder.call(cgutils.get_or_insert_function(builder.module, fnty, symbol), call_args)
        return context.get_dummy_value()

    return types.none(name, types.int64), codegen


@njit(nogil=True, cache=True)
def take(state, phase):
    """The next chunk of ``phase`` for this thread (compare it with the phase's count)."""
    return fetch_add(state, 1 + 2 * phase, 1)


@njit(nogil=True, cache=True)
def done(state, phase):
    """Mark one chunk of ``phase`` done."""
    fetch_add(state, 2 + 2 * phase, 1)


@njit(nogil=True, cache=True)
def finish(state, phase, count):
    """Wait until all ``count`` chunks of ``phase`` are done; False if the team stopped."""
    spins = 0
    while load(state, 2 + 2 * phase) < count:
        if load(state, _STOPPED) != 0:
            return False
        spins += 1
        if spins <= _SPINS:
            pause()
        elif spins <= _SPINS + _YIELDS:
            _libc_call("sched_yield", 0)  # let another thread of this core run
        else:
            _libc_call("usleep", _SLEEP_US)
    return load(state, _STOPPED) == 0


def stop(state: np.ndarray) -> None:
    """Tell the team to leave (a thread failed); its waits return False."""
    state[_STOPPED] = 1
