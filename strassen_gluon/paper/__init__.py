"""The paper's tables as commands (``python -m strassen_gluon.paper``).

published  the paper's values as data (published.json), with their sources
budgets    every budget's options (paper, cpu, smoke), in one place
tables     the grids of cells and each cell's command line
runner     runs the unfinished cells here (resuming partial ones); records count/matmul cells
render     Markdown beside the paper's values, and a PNG in the posters' form
cli        list / plan / run / render / record

Kept free of imports so that :mod:`strassen_gluon.report` can read the published values
without loading the renderer (which imports the report).
"""
