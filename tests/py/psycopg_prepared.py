"""psycopg 3 through hapool: server-side prepared statements (prepare_threshold=0) from several
connections sharing a small transaction pool. Usage: psycopg_prepared.py CONNINFO. Prints 'ok'."""
import sys
import threading

import psycopg

conninfo = sys.argv[1]
errors = []


def worker(n: int) -> None:
    try:
        with psycopg.connect(conninfo, prepare_threshold=0, autocommit=True) as conn:
            for i in range(50):
                row = conn.execute("SELECT %s::int * 2, %s::text", (n * 1000 + i, f"w{n}")).fetchone()
                assert row == (2 * (n * 1000 + i), f"w{n}"), row
                with conn.transaction():
                    conn.execute("INSERT INTO psy (worker, i) VALUES (%s, %s)", (n, i))
                    count = conn.execute("SELECT count(*) FROM psy WHERE worker = %s", (n,)).fetchone()[0]
                    assert count == i + 1, (count, i)
    except Exception as e:  # noqa: BLE001 - report every failure to the test
        errors.append(f"worker {n}: {e!r}")


with psycopg.connect(conninfo, autocommit=True) as setup:
    setup.execute("CREATE TABLE IF NOT EXISTS psy (worker int, i int)")

threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if errors:
    print("\n".join(errors))
    sys.exit(1)
print("ok")
