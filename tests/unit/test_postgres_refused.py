"""What ``pyngest start`` says when PostgreSQL answers but will not let it in (store/postgres/
store.py ``_refused``): the cases a real server gives are in tests/integration/server/test_cli.py;
these are the ones it cannot easily be made to give."""

from __future__ import annotations

import asyncpg

from pyngest.server.store.postgres.store import _refused

URI = "postgres://app:hunter2@db.example:5432/inngest"
SHOWN = "postgres://app:***@db.example:5432/inngest"


def test_a_wrong_password_says_to_check_the_login() -> None:
    message = _refused(URI, asyncpg.exceptions.InvalidPasswordError('password authentication failed for user "app"'))
    assert message == (f'PostgreSQL at {SHOWN} refused the login: password authentication failed for user "app"; '
                       "check the user and password in --postgres-uri")


def test_another_refusal_names_the_server_and_its_reason() -> None:
    message = _refused(URI, asyncpg.exceptions.CantChangeRuntimeParamError('parameter "data_directory" cannot be changed now'))
    assert message == f"PostgreSQL at {SHOWN} refused the connection: parameter \"data_directory\" cannot be changed now"


def test_an_error_before_any_answer_names_the_flag() -> None:
    message = _refused(URI, ValueError("invalid connection option"))
    assert message == f"cannot connect to PostgreSQL with --postgres-uri {SHOWN}: invalid connection option"
    assert "hunter2" not in message
