"""`python -m dp_eval ...` = the dp_eval command (see dp_eval.cli)."""
import sys

from dp_eval.cli import main

sys.exit(main())
