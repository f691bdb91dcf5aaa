"""Hand back one exception as itself when a nursery wraps it in a group."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Concatenate, NoReturn, ParamSpec, TypeVar

import trio

from ._backend import require_trio

__all__ = ["leaves", "nursery_twin", "reraise", "single_exception"]

T = TypeVar("T")
P = ParamSpec("P")


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


def nursery_twin(
    opener: Callable[P, AbstractAsyncContextManager[T]],
    closed: Callable[[T], trio.Event],
    *,
    opened: Callable[[T], None],
    name: str,
    doc: str,
) -> Callable[Concatenate[trio.Nursery, P], Awaitable[T]]:
    """Make the ``connect_*(nursery, ...)`` twin of an ``open_*`` context manager.

    The twin takes the same keyword arguments (checked by type checkers, via
    ParamSpec). Its task enters the context manager in the caller's nursery,
    hands back what it yields, and leaves the block when ``closed(value)`` is
    set (by the value's ``aclose()``) or when the nursery is cancelled.
    ``opened(value)`` is called once the value is handed back (to mark it as
    one its caller must close).
    """

    async def connect(nursery: trio.Nursery, /, *args: P.args, **kwargs: P.kwargs) -> T:
        # Made here, so that the long-lived task below holds only the manager,
        # not the arguments (an API key among them) as a frame local.
        require_trio()
        manager = opener(*args, **kwargs)

        async def run(*, task_status: trio.TaskStatus[T] = trio.TASK_STATUS_IGNORED) -> None:
            async with manager as value:
                task_status.started(value)
                await closed(value).wait()

        with single_exception():
            value: T = await nursery.start(run)
        opened(value)
        return value

    # For help() and Sphinx: the opener's parameters, after the nursery.
    signature = inspect.signature(opener)
    nursery_param = inspect.Parameter("nursery", inspect.Parameter.POSITIONAL_ONLY, annotation="trio.Nursery")
    connect.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[nursery_param, *signature.parameters.values()],
        return_annotation=inspect.Signature.empty,
    )
    connect.__name__ = connect.__qualname__ = name
    connect.__module__ = opener.__module__
    connect.__doc__ = doc
    return connect
