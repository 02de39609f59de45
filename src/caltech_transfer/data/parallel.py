"""Work over many images on every core, in order, with a progress bar."""

from multiprocessing import Pool

from tqdm import tqdm


def parallel_map(fn, items, workers, desc):
    """fn over items in order, in `workers` processes when that pays off, with a progress bar."""
    items = list(items)
    progress = dict(total=len(items), desc=desc, unit="img")
    if workers < 2 or len(items) < 64:
        yield from tqdm(map(fn, items), **progress)
        return
    pool = Pool(workers)
    try:
        yield from tqdm(pool.imap(fn, items, chunksize=32), **progress)
        # the workers end on their own; Pool's `with` sends them SIGTERM instead, which one of them was seen to
        # miss while it waited for the next task, leaving the stage waiting for it forever
        pool.close()
        pool.join()
    finally:
        pool.terminate()  # after an error or an interruption: stop the workers now
