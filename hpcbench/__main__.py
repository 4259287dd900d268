import sys

from hpcbench.cli import main

sys.exit(main())
