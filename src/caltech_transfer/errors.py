"""Errors meant for the person running a stage: one line, saying what to do; and one way to stop."""
import functools
import os
import resource
import signal
import sys
import time


class UserError(Exception):
    """A mistake or an environment problem the user can fix; printed as one line, no traceback."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (sent by `timeout`, schedulers, `dvc queue kill`, container stops), raised where the program
    is, so it unwinds exactly like Ctrl-C: temporary folders are removed and outputs are left untouched."""


_stage_pid = None


def _terminate(signum, frame):
    if os.getpid() != _stage_pid:  # a worker forked from the stage (a pool, a loader): just end, the stage cleans up
        os._exit(128 + signum)
    raise Terminated()


def cli(main):
    """Run `main`, turning UserError, Ctrl-C and SIGTERM into a one-line message and a non-zero exit."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        global _stage_pid
        _stage_pid = os.getpid()
        signal.signal(signal.SIGTERM, _terminate)
        started = time.time()
        try:
            result = main(*args, **kwargs)
            print(f"{' '.join(sys.argv)}: {time.time() - started:.0f} s, {peak_memory()}", file=sys.stderr)
            return result
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt as err:
            terminated = isinstance(err, Terminated)
            print(f"interrupted ({'SIGTERM' if terminated else 'Ctrl-C'}): no output was written or changed; run the "
                  "same command again to continue (training resumes after its last finished epoch)", file=sys.stderr)
            sys.exit(143 if terminated else 130)

    return wrapper


def peak_memory():
    """The largest resident size this process and any one of its children (loader workers) reached, and the GPU
    memory it allocated where it used CUDA (torch is looked up, not imported: data stages never load it)."""
    own, child = (resource.getrusage(who).ru_maxrss / 2**20 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    text = f"peak memory {own:.2f} GiB (largest child process {child:.2f} GiB)"  # ru_maxrss is in KiB on Linux
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        text += f", GPU {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
    return text
