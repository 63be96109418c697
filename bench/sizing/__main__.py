import sys

from bench.sizing.run import main

sys.exit(main(sys.argv[1:]))
