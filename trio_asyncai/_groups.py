"""Hand back one exception as itself when a nursery wraps it in a group."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

__all__ = ["leaves", "reraise", "single_exception"]



@contextmanager
def single_exception() -> Iterator[None]:
    """Re-raise a lone exception out of the group a trio nursery wrapped it in.

    trio nurseries always raise groups. Our background tasks do not raise on
    purpose (they hand errors to the utterances they concern), so a group
    leaving our context managers nearly always holds exactly one exception:
    the caller's own, from the body of the ``async with``. The caller should
    get that exception back unchanged, not a group to ``except*``. Only the
    nursery's own level is taken off: if the caller raised a group of their
    own, that group comes back as it was. A group of several (a bug of ours
    beside the caller's error) is left alone, so that nothing is hidden.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        reraise(group.exceptions[0])


def reraise(exc: BaseException) -> NoReturn:
    """Raise ``exc`` from an ``except`` clause with its own context, cause and traceback.

    A ``raise`` inside an ``except`` clause makes the exception being handled
    (here: the nursery's group) the new exception's ``__context__``, and
    ``raise ... from`` also sets ``__suppress_context__``. Either would lose
    the context the caller's exception already had (``try: ... except A:
    raise B`` in the block: B's context is A). So the exception's own
    ``__context__`` and ``__suppress_context__`` are put back as it leaves;
    its ``__cause__`` is untouched by a bare ``raise``, and its traceback only
    grows by the frames it passes through.
    """
    __tracebackhide__ = True  # pytest: this frame is plumbing, not the failure
    context, suppress = exc.__context__, exc.__suppress_context__
    try:
        raise exc
    finally:
        exc.__context__, exc.__suppress_context__ = context, suppress
        # No reference cycle through this frame (exc -> traceback -> frame -> exc).
        del exc, context


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in a group and its nested groups, flattened."""
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(leaves(exc))
        else:
            out.append(exc)
    return out
