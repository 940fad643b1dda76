"""The names an inversion's settings are picked by (`--mode`, `--space`, `--precision`): their one home, kept free of
torch (as `ganinv.builtin_models` is) so that a command refuses a misspelt name in a fraction of a second, before it
imports torch. The modules that act on them (`ganinv.inversion.batch`, `ganinv.inversion.optimize`,
`ganinv.utils.precision`) import them from here."""

MODES = ("optimize", "encoder", "hybrid")  # how a batch is inverted: ganinv/inversion/batch.py
SPACES = ("z", "w", "w+")                  # where the optimisation runs: ganinv/inversion/optimize.py
PRECISIONS = ("fp32", "bf16")              # autocast or not: ganinv/utils/precision.py
