"""``python -m yoloslim ...``: the ``yoloslim`` command."""

from yoloslim.cli.main import run

if __name__ == "__main__":  # not when a spawned latency worker imports this as __mp_main__
    run()
