"""The key a password budget is kept under (shared/http/budgets.py): no service, no app."""

from __future__ import annotations

from shared.http.budgets import account_subject


def test_every_spelling_of_an_email_is_one_account() -> None:
    assert account_subject("  Ada@Example.COM ") == account_subject("ada@example.com")
    assert account_subject("ada@example.com") != account_subject("bob@example.com")


def test_the_subject_does_not_carry_the_email() -> None:
    subject = account_subject("ada@example.com")
    assert "ada" not in subject
    assert len(subject) == 32
