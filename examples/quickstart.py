"""Quickstart: rdispy's embedded default on this machine.

Runs with nothing installed but the package: Executor() starts a private server and one consumer
process per core, and removes them all on leaving the `with` block.

    python examples/quickstart.py
"""

import math
import socket
import time

import rdispy


def slow_square(x: int) -> tuple[int, str]:
    time.sleep(0.05)
    return x * x, socket.gethostname()


def is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, math.isqrt(n) + 1))


if __name__ == "__main__":
    started = time.perf_counter()
    with rdispy.Executor() as ex:
        print(list(ex.map(pow, range(10), range(10))))

        future = ex.submit(slow_square, 12)
        value, host = future.result()
        print(f"12 squared is {value}, computed on {host} by node {future.node} pid {future.pid}")

        primes = sum(ex.map(is_prime, range(200_000)))
        print(f"{primes} primes below 200,000")

        try:
            ex.submit(math.sqrt, -1).result()
        except ValueError as exc:
            print(f"remote error re-raised here: ValueError({exc})")
    print(f"done in {time.perf_counter() - started:.2f}s")
