"""nbgrader configuration of the prefopt_toy labs (the teacher's course folder).

nbgrader reads this file from its working directory; ``python -m prefopt_toy.labs release`` and
``grade`` run nbgrader with ``course/`` as the working directory (see course/README.md).
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821  (injected by nbgrader's config loader)

HERE = Path(__file__).resolve().parent

c.CourseDirectory.course_id = "prefopt_toy-labs"
c.CourseDirectory.root = str(HERE)
c.CourseDirectory.db_url = f"sqlite:///{HERE / 'gradebook.db'}"
# Only the notebook is released: the paired py:percent source (with its solutions) and the
# jupytext configuration stay on the teacher's side.
c.CourseDirectory.ignore = [
    ".ipynb_checkpoints",
    "*.pyc",
    "__pycache__",
    "feedback",
    "*.py",
    "jupytext.toml",
]

# The student's placeholder: the self-check turns this NotImplementedError into
# "exercise N is not done yet".
c.ClearSolutions.code_stub = {
    "python": 'raise NotImplementedError("# YOUR CODE: replace this line with your solution")'
}

# Autograding: each notebook in a fresh kernel, at most 120 s per cell, then a failed cell.
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True

# The kernels nbgrader starts inherit this environment: one torch thread, no Hugging Face
# downloads, the demos after each check in smoke mode (the checks themselves do not depend on it).
for name, value in {
    "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "PREFOPT_SMOKE": "1",
    "MPLBACKEND": "Agg",
}.items():
    os.environ.setdefault(name, value)
