"""Running the cells of a table here, one after another, and recording the commands that write
no run folder.

A training cell is finished when its run folder holds summary.json; a folder with only
config.json is a partial run, continued with ``--resume FOLDER``; otherwise it starts. A recorded
cell (counting, the matmul search) is finished when its folder holds ``result.json`` with an exit
status that is a result (the search's 1, "not found", is one). Commands run in this process
through their ``main(argv)``, exactly as ``python -m MODULE ARGV`` would run them. Ctrl-C stops
after the running command saved its last complete epoch; running the same command again
continues.
"""
import contextlib
import datetime
import importlib
import io
import json
import os
import sys
import time

from ..errors import EXIT_INTERRUPTED, UsageError
from ..train.checkpoint import write_json_atomic
from ..train.run import CONFIG_NAME, SUMMARY_NAME
from .tables import TABLES

RESULT_NAME = 'result.json'
OUTPUT_NAME = 'stdout.txt'
RECORDED_MODULES = tuple(t.module for t in TABLES.values() if t.task is None)


def read_result(folder):
    """A recorded cell's result.json, or None."""
    try:
        with open(os.path.join(folder, RESULT_NAME)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def cell_state(cell):
    """'done', 'partial' (a run folder without summary.json: resumable) or 'new'."""
    if cell.recorded:
        result = read_result(cell.folder)
        done = result is not None and result.get('exit_status') in TABLES[cell.table].outcomes
        return 'done' if done else 'new'
    if os.path.isfile(os.path.join(cell.folder, SUMMARY_NAME)):
        return 'done'
    if os.path.isfile(os.path.join(cell.folder, CONFIG_NAME)):
        return 'partial'
    return 'new'


def cell_argv(cell, state=None):
    """The cell's options, with ``--resume FOLDER`` for a partial run."""
    state = state or cell_state(cell)
    return list(cell.argv) + (['--resume', cell.folder] if state == 'partial' else [])


def call_main(module, argv):
    """`python -m module argv` in this process: its main's exit status (SystemExit included)."""
    try:
        status = importlib.import_module(module).main(list(argv))
    except SystemExit as exit_:
        status = exit_.code
    if status is None:
        return 0
    return status if isinstance(status, int) else 1


def record(folder, module, argv):
    """Run a command that writes no run folder; keep its standard output (stdout.txt), exit
    status and wall time (result.json) in `folder`. Returns the exit status. Nothing is
    recorded when it is interrupted."""
    if module not in RECORDED_MODULES:
        raise UsageError('record runs %s, not %s' % (' or '.join(RECORDED_MODULES), module))
    os.makedirs(folder, exist_ok=True)
    output = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(output):
        status = call_main(module, argv)
    seconds = time.perf_counter() - start
    with open(os.path.join(folder, OUTPUT_NAME), 'w') as f:
        f.write(output.getvalue())
    write_json_atomic(os.path.join(folder, RESULT_NAME), {
        'module': module, 'argv': list(argv), 'exit_status': status, 'seconds': seconds,
        'stdout': OUTPUT_NAME,
        'finished': datetime.datetime.now().isoformat(timespec='seconds')})
    return status


def run_cell(cell, argv):
    if cell.recorded:
        return record(cell.folder, cell.module, argv)
    return call_main(cell.module, argv)


def run_cells(cells, say=print):
    """Run the unfinished cells in order; returns 0 (all finished), 1 (some failed or wait for
    a failed one) or 130 (interrupted)."""
    failed, total = [], len(cells)
    states = {c.name: cell_state(c) for c in cells}
    for i, cell in enumerate(cells, 1):
        head = '[%d/%d] %s' % (i, total, cell.name)
        if states[cell.name] == 'done':
            say('%s: finished, skipped' % head)
            continue
        waiting = [d for d in cell.after if states.get(d) != 'done']
        if waiting:
            say('%s: skipped, it needs %s (not finished)' % (head, ', '.join(waiting)))
            failed.append(cell.name)
            continue
        argv = cell_argv(cell, states[cell.name])
        say('%s: %s\n    %s' % (head, 'resuming' if states[cell.name] == 'partial'
                                 else 'starting', cell.line(argv)))
        start = time.time()
        try:
            status = run_cell(cell, argv)
        except KeyboardInterrupt:
            status = EXIT_INTERRUPTED
        if status == EXIT_INTERRUPTED:
            say('interrupted in %s; run the same command again to continue' % cell.name)
            return EXIT_INTERRUPTED
        states[cell.name] = cell_state(cell)
        outcome = 'finished' if states[cell.name] == 'done' else 'not finished (exit %s)' % status
        say('%s: %s in %.0f s' % (head, outcome, time.time() - start))
        if states[cell.name] != 'done':
            failed.append(cell.name)
    done = sum(1 for s in states.values() if s == 'done')
    say('%d of %d cells finished%s' % (done, total, '; not finished: ' + ', '.join(failed)
                                       if failed else ''))
    sys.stdout.flush()
    return 1 if failed else 0
