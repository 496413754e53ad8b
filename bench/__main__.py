"""``python -m bench ...`` at the repository root: the benchmarks, which are not installed with the product."""

import argparse
import sys

from bench import cli


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=cli.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    cli.add_arguments(parser)
    return cli.run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
