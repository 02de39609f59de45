"""How a stage or command runs: its arguments, its errors as one line saying what to do, and one way to
stop (Ctrl-C and SIGTERM alike)."""

import contextlib
import errno
import functools
import os
import signal
import sys
import threading
import time

import psutil

from .errors import UserError
from .memory import AnonymousPeak, peak_memory


class Terminated(KeyboardInterrupt):
    """SIGTERM (sent by `timeout`, schedulers, `dvc queue kill`, container stops), raised where the program
    is, so it unwinds exactly like Ctrl-C: temporary folders are removed and outputs are left untouched."""


_stage_pid = None
_deferring, _deferred = 0, []


def _terminate(signum, frame):
    if os.getpid() != _stage_pid:  # a worker forked from the stage (a pool, a loader): just end, the stage cleans up
        os._exit(128 + signum)
    if _deferring:
        _deferred.append(signum)
        return
    raise Terminated()


@contextlib.contextmanager
def uninterrupted():
    """SIGTERM waits until the block is done: raised inside torch.save, it gave way to the zip writer's own error."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _deferred:
            _deferred.clear()
            raise Terminated()


# What a stage cannot write (a read-only folder, a folder where a file goes, a full disk): the operating system's
# refusal, turned into one line that names the path.
UNWRITABLE = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.EISDIR,
    errno.ENOTDIR,
    errno.EEXIST,
    errno.ENOSPC,
    errno.EDQUOT,
}


def end_with_dvc():
    """SIGTERM to this stage when the `dvc repro` that runs it is gone, so that a stage never goes on writing
    outputs nobody will record. DVC runs the command in $SHELL, and dash or zsh stay between the two as a process of
    their own, so the one watched is the nearest ancestor without DVC's DVC_STAGE in its environment. Outside DVC
    nothing is watched: `nohup python -m ...` goes on after its terminal closes."""
    if "DVC_STAGE" not in os.environ:
        return
    starter = psutil.Process().parent()
    with contextlib.suppress(psutil.Error):
        while "DVC_STAGE" in starter.environ():
            starter = starter.parent()
    threading.Thread(target=_signal_when_gone, args=(starter,), daemon=True).start()


def _signal_when_gone(process):
    with contextlib.suppress(psutil.Error):
        while process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
            time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)


def cli(main):
    """Run `main`, turning UserError, unwritable outputs, Ctrl-C and SIGTERM (the end of the `dvc repro` running it
    included) into a one-line message and a non-zero exit."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        global _stage_pid
        _stage_pid = os.getpid()
        signal.signal(signal.SIGTERM, _terminate)
        started, anonymous = time.time(), AnonymousPeak()
        try:
            end_with_dvc()
            result = main(*args, **kwargs)
            print(
                f"{' '.join(typed_command())}: {time.time() - started:.0f} s, {peak_memory(anonymous)}", file=sys.stderr
            )
            return result
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except OSError as err:
            if err.errno not in UNWRITABLE or not err.filename:
                raise
            print(
                f"error: cannot write {err.filename} ({err.strerror}): make it and its folder writable, or move what "
                "stands in its place; earlier outputs are unchanged",
                file=sys.stderr,
            )
            sys.exit(2)
        except KeyboardInterrupt as err:
            terminated = isinstance(err, Terminated)
            print(
                f"interrupted ({'SIGTERM' if terminated else 'Ctrl-C'}): no output was written or changed; run the "
                "same command again to continue (training resumes after its last finished epoch)",
                file=sys.stderr,
            )
            sys.exit(143 if terminated else 130)

    return wrapper


def typed_command():
    """[how the command was started, its arguments...]: `python -m caltech_transfer.train` rather than the path of the
    module's file that sys.argv[0] holds."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)  # None when run as a file, not with -m
    return [f"python -m {spec.name.removesuffix('.__main__')}" if spec else sys.argv[0], *sys.argv[1:]]


def stage_arguments(argv, *kinds):
    """The arguments of a stage's command line, each of its kind: a tuple of choices, int for a whole number (a split
    seed, images per class) or str for a name (a ladder rung, which params.yaml names), e.g. ("finetune", 3) from
    `python -m caltech_transfer.train finetune 3`."""
    words = argv[1:]
    fits = len(words) == len(kinds) and all(
        word.isdigit() if kind is int else kind is str or word in kind for word, kind in zip(words, kinds)
    )
    if not fits:
        names = {int: "<whole number>", str: "<name>"}
        shown = " ".join(names.get(kind) or f"{{{'|'.join(kind)}}}" for kind in kinds)
        raise UserError(f"usage: {typed_command()[0]} {shown}")
    return tuple(int(word) if kind is int else word for word, kind in zip(words, kinds))
