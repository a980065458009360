"""``python -m training.eval``: the evaluation harness (also ``python -m training eval``)."""

import sys

from training.eval.harness import main

sys.exit(main())
