"""`python -m finetune ...`: see finetune.cli."""

import sys

from finetune.cli import main

sys.exit(main(sys.argv[1:]))
