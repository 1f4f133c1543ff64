#!/bin/sh
# The batchgate image's entrypoint: `entrypoint.sh <role> [args...]` becomes that process
# (PID 1, so it gets the container's signals), with the command `make run` gives it: both
# come from stack/programs.py, through stack/container.py. Extra arguments are
# appended. Anything that is not a role (`sh`, `python -m ...`) runs as given.
set -eu

case "${1:-}" in
    api | worker | beat | flower | simulator | nginx | migrate | health)
        exec python -m stack.container "$@"
        ;;
    "")
        echo "usage: entrypoint.sh api|worker|beat|flower|simulator|nginx|migrate|health [args...], or a command" >&2
        exit 2
        ;;
    *)
        exec "$@"
        ;;
esac
