"""Character-aware Strassen language model on Penn Treebank (run ``python3 train.py`` here)."""
