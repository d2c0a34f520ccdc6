"""Drives the lab RouterOS API server with the real librouteros client; prints JSON of what it saw.

Usage: python3 routeros_librouteros.py HOST PORT USER PASS [LOGIN [SCENARIO]]
  LOGIN     plain (RouterOS >= 6.43, the default) or token (the MD5 challenge of older versions)
  SCENARIO  full (the default): a wrong login, then add / print / query / update / unset /
            remove on /ppp/secret, errors, /ppp/active, /quit
            empty: prints of an empty router only (RouterOS >= 7.18 answers them with !empty)
            first-command: log in, then one print; reports the error if there is one
            set NAME FIELD VALUE: an out-of-band edit, as an operator would make by hand

Every step's result goes into the JSON; an unexpected exception exits non-zero with a traceback.
"""

import json
import sys
from importlib.metadata import version

from librouteros import connect, login
from librouteros.exceptions import FatalError, TrapError
from librouteros.query import Key


def trap_message(call):
    """The message of the TrapError raised by call(), or None when it succeeds."""
    try:
        call()
    except TrapError as e:
        return e.message
    return None


def main():
    host, port, user, password = sys.argv[1:5]
    method = sys.argv[5] if len(sys.argv) > 5 else "plain"
    scenario = sys.argv[6] if len(sys.argv) > 6 else "full"
    login_method = {"plain": login.plain, "token": login.token}[method]

    def open_api(pw):
        return connect(
            host=host,
            port=int(port),
            username=user,
            password=pw,
            login_method=login_method,
            encoding="UTF-8",
            timeout=10,
        )

    out = {"librouteros": version("librouteros"), "login": method, "scenario": scenario}
    name, id_, profile = Key("name"), Key(".id"), Key("profile")

    if scenario == "first-command":
        api = open_api(password)
        out["first_command_error"] = trap_message(lambda: list(api.path("ppp", "secret")))
        print(json.dumps(out))
        return

    if scenario == "set":
        target, field, value = sys.argv[7:10]
        api = open_api(password)
        secret = api.path("ppp", "secret")
        ids = [row[".id"] for row in secret.select(id_).where(name == target)]
        secret.update(**{".id": ids[0], field: value})
        out["after"] = [row for row in secret if row["name"] == target]
        api.close()
        print(json.dumps(out))
        return

    if scenario == "empty":
        api = open_api(password)
        secret = api.path("ppp", "secret")
        out["print"] = list(secret)
        out["select"] = list(secret.select(name).where(name == "nobody"))
        out["active"] = list(api.path("ppp", "active"))
        api.close()
        print(json.dumps(out))
        return

    out["bad_login"] = trap_message(lambda: open_api(password + "-wrong"))

    api = open_api(password)
    secret = api.path("ppp", "secret")
    out["initial"] = list(secret)

    ids = {}
    ids["juan.perez"] = secret.add(
        name="juan.perez",
        password="j=1",
        service="pppoe",
        comment="P\u00e9rez, casa 12",
        **{"remote-address": "10.0.0.2"},
    )
    ids["maria"] = secret.add(name="maria", password="m1", profile="Morosos")
    ids["pedro"] = secret.add(name="pedro", password="p1", disabled=True)
    out["ids"] = ids
    out["duplicate"] = trap_message(lambda: secret.add(name="maria", password="x"))
    out["after_add"] = list(secret)

    out["select_maria"] = list(secret.select(id_, name, profile).where(name == "maria"))
    out["select_in"] = sorted(
        row["name"] for row in secret.select(name).where(name.In("juan.perez", "pedro"))
    )
    out["select_not_maria"] = sorted(row["name"] for row in secret.select(name).where(name != "maria"))
    out["select_none"] = list(secret.select(name).where(name == "nobody"))

    secret.update(**{".id": ids["juan.perez"], "profile": "Morosos", "disabled": True, "limit-bytes-in": 1000})
    out["unknown_id"] = trap_message(lambda: secret.update(**{".id": "*99", "comment": "x"}))
    out["missing_id"] = trap_message(lambda: secret.update(name="maria", comment="x"))
    out["unknown_field"] = trap_message(lambda: secret.update(**{".id": ids["maria"], "colour": "red"}))
    tuple(secret("unset", **{".id": ids["maria"], "value-name": "profile"}))
    secret.remove(ids["pedro"])
    out["final"] = list(secret)

    active = api.path("ppp", "active")
    out["active_before"] = list(active)
    sessions = [row[".id"] for row in active.select(id_).where(name == "juan.perez")]
    active.remove(*sessions)
    out["active_after"] = list(active)

    try:
        tuple(api("/quit"))
        out["quit"] = None
    except FatalError as e:
        out["quit"] = str(e)

    print(json.dumps(out))


if __name__ == "__main__":
    main()
