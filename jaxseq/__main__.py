import sys

from jaxseq.cli import main

sys.exit(main())
