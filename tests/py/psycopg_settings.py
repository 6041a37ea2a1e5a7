"""psycopg 3 through hapool (transaction pooling, one server connection): a SET sent as psycopg sends it (the
extended protocol) and a setting given in `options` at connect time both stay with the client that made them,
across the server connection changing hands. Usage: psycopg_settings.py CONNINFO. Prints 'ok'."""
import sys

import psycopg

conninfo = sys.argv[1]
show = "SELECT current_setting('search_path') || ' | ' || current_setting('statement_timeout')"

with psycopg.connect(conninfo, autocommit=True) as setup:
    setup.execute("CREATE SCHEMA IF NOT EXISTS psy_s1")

with psycopg.connect(conninfo, autocommit=True, options="-c statement_timeout=1234") as a, \
        psycopg.connect(conninfo, autocommit=True) as b:
    assert a.execute(show).fetchone()[0] == '"$user", public | 1234ms', a.execute(show).fetchone()
    a.execute("SET search_path TO psy_s1")
    assert b.execute(show).fetchone()[0] == '"$user", public | 0', "b got a's settings"
    got = a.execute(show).fetchone()[0]
    assert got == "psy_s1 | 1234ms", f"a lost its settings: {got}"
    a.execute("RESET ALL")
    got = a.execute(show).fetchone()[0]
    assert got == '"$user", public | 1234ms', f"RESET ALL returns to the startup value: {got}"
print("ok")
