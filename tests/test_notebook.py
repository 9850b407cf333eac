"""notebooks/StrassenNetsCIFAR10.ipynb: committed clean, and runs end to end (QUICK) headless.

The run uses the real CIFAR-10 when $STRASSEN_CIFAR10_DIR is set (CI sets it) or the MXNet cache
folder holds it; otherwise a fake copy in the real file format, large enough for the QUICK
subset, is written to tmp_path. It executes in a fresh kernel of this interpreter, in a
temporary working folder, and takes about two minutes on a 2-core CPU.
"""
import glob
import math
import os

import nbformat
from nbclient import NotebookClient

from cifar_fixtures import write_fake_cifar
from strassen_gluon import cifar10
from strassen_gluon.data import ENV_VAR, resolve_data_dir
from strassen_gluon.data.cifar import find_batch_folder
from strassen_gluon.train.run import read_summary

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, 'notebooks', 'StrassenNetsCIFAR10.ipynb')
CELL_TIMEOUT = 900  # seconds; the training cell takes about 2 minutes on a loaded 2-core CPU


def read_notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def stdout_of(nb):
    return ''.join(output.get('text', '') for cell in nb.cells if cell.cell_type == 'code'
                   for output in cell.outputs
                   if output.output_type == 'stream' and output.name == 'stdout')


def cifar_for_the_run(tmp_path):
    """(folder, strict_counts): the real data if the library finds it without downloading,
    else a fake copy with enough images per class for the QUICK subset."""
    if os.environ.get(ENV_VAR):
        return os.environ[ENV_VAR], True  # asked for explicitly: must work as given
    folder, missing = find_batch_folder(resolve_data_dir())
    if not missing:
        return folder, True
    per_file = 10 * math.ceil(cifar10.QUICK['train_subset'] / 50)  # 5 files, 10 classes
    fake = tmp_path / 'cifar10'
    write_fake_cifar(fake, n_train_per_batch=per_file, n_test=256)
    return str(fake), False


def test_committed_notebook_is_valid_and_has_no_outputs():
    nb = read_notebook()
    nbformat.validate(nb)
    assert nb.nbformat == 4
    code = [cell for cell in nb.cells if cell.cell_type == 'code']
    # Committed with outputs cleared, so what is committed is never stale.
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    parameters = [cell for cell in code if 'parameters' in cell.metadata.get('tags', [])]
    assert len(parameters) == 1 and parameters[0] is code[0]
    assert 'QUICK = ' in parameters[0].source and 'STRASSEN_QUICK' in parameters[0].source


def test_notebook_runs_headless_with_quick(tmp_path, monkeypatch):
    data_dir, strict = cifar_for_the_run(tmp_path)
    runs = tmp_path / 'runs'
    work = tmp_path / 'work'
    work.mkdir()
    # The kernel inherits this environment; the parameter cell reads it.
    monkeypatch.setenv('STRASSEN_QUICK', '1')
    monkeypatch.setenv(ENV_VAR, data_dir)
    monkeypatch.setenv('STRASSEN_CIFAR10_STRICT', '1' if strict else '0')
    monkeypatch.setenv('STRASSEN_NOTEBOOK_RUNS', str(runs))

    nb = read_notebook()
    # Raises CellExecutionError (with the cell's traceback) as soon as a cell raises.
    NotebookClient(nb, kernel_name='python3', timeout=CELL_TIMEOUT, allow_errors=False,
                   resources={'metadata': {'path': str(work)}}).execute()

    code = [cell for cell in nb.cells if cell.cell_type == 'code']
    assert all(cell.execution_count is not None for cell in code)
    assert not [o for cell in code for o in cell.outputs if o.output_type == 'error']
    text = stdout_of(nb)
    assert 'QUICK = True' in text
    assert 'SPN equals A @ B: True' in text
    assert 'exact for all A, B: True' in text
    assert 'deployment form matches the Gluon layer: True' in text
    figures = [o for cell in code for o in cell.outputs if 'image/png' in o.get('data', {})]
    assert len(figures) >= 3  # quantizer histogram, learning curves, per-layer counts

    # The runs went to the folder given by the environment, not into the working folder's
    # default: the Strassen network, the dense ResNet-20 and its converted fine-tune.
    run_dirs = sorted(glob.glob(os.path.join(str(runs), '*')))
    assert [os.path.basename(d).split('-20')[0] for d in run_dirs] == \
        ['resnet20', 'st_resnet20', 'st_resnet20-tuned']
    assert not os.path.exists(work / 'runs')
    summary = read_summary(os.path.join(run_dirs[1], 'summary.json'))
    val_acc = summary['metrics']['val_acc']
    assert isinstance(val_acc, (int, float)) and 0.0 <= val_acc <= 1.0
    quick = cifar10.QUICK
    assert {name: stage['epochs'] for name, stage in summary['stages'].items()} == {
        'full': quick['epochs_fp'], 'ternary': quick['epochs_quant'],
        'frozen': quick['epochs_frozen']}
    assert summary['config']['train_subset'] == quick['train_subset']
    assert 'final validation accuracy: %.4f' % val_acc in text
    # The converted network computes the dense one before fine-tuning.
    assert '21 SPN layers converted, 21 exactly' in text
    difference = float(text.split('relative to the largest logit: ')[1].split()[0])
    assert difference < 1e-5
    tuned = read_summary(os.path.join(run_dirs[2], 'summary.json'))
    assert tuned['config']['init_from'] == run_dirs[0]
    assert {name: stage['epochs'] for name, stage in tuned['stages'].items()} == {
        'full': cifar10.FINE_TUNE['epochs_fp'], 'ternary': cifar10.FINE_TUNE['epochs_quant'],
        'frozen': cifar10.FINE_TUNE['epochs_frozen']}
