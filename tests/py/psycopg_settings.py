"""psycopg 3 through hapool: a SET sent through the extended protocol (psycopg sends a statement without
parameters as a simple query, unless it is prepared or asks for binary results: both are used here) and a
setting given in `options` at connect time both stay with the client that made them (in transaction pooling
across the server connection changing hands), and RESET ALL, prepared, returns to the connect-time value.
Usage: psycopg_settings.py CONNINFO. Prints 'ok'."""
import sys

import psycopg

conninfo = sys.argv[1]
show = "SELECT current_setting('search_path') || ' | ' || current_setting('statement_timeout')"

with psycopg.connect(conninfo, autocommit=True) as setup:
    setup.execute("CREATE SCHEMA IF NOT EXISTS psy_s1")

with psycopg.connect(conninfo, autocommit=True, options="-c statement_timeout=1234") as a, \
        psycopg.connect(conninfo, autocommit=True) as b:
    assert a.execute(show).fetchone()[0] == '"$user", public | 1234ms', a.execute(show).fetchone()
    a.execute("SET search_path TO psy_s1", binary=True)  # Parse, Bind, Execute of the unnamed statement
    assert b.execute(show).fetchone()[0] == '"$user", public | 0', "b got a's settings"
    got = a.execute(show).fetchone()[0]
    assert got == "psy_s1 | 1234ms", f"a lost its settings: {got}"
    a.execute("RESET ALL", prepare=True)  # a named statement
    got = a.execute(show).fetchone()[0]
    assert got == '"$user", public | 1234ms', f"RESET ALL returns to the startup value: {got}"
print("ok")
