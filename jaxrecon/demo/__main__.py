"""`python -m jaxrecon.demo`: see `jaxrecon.demo.cli`."""
import sys

from jaxrecon.demo.cli import main

main(sys.argv[1:])
