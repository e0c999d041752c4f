"""Authorisation lists, as ts_salobj's ``setAuthList`` (see `AuthList` for the rule used here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import ExpectedError

__all__ = ["AuthList"]


def _parse_names(text: str) -> tuple[str, list[str]]:
    """Split ``"[+|-]a, b"`` into (op, names); op is "+", "-" or "=" (replace)."""
    text = text.strip()
    op = "="
    if text[:1] in ("+", "-"):
        op, text = text[0], text[1:]
    names = [name.strip() for name in text.split(",") if name.strip()]
    return op, names


def _normalize_csc(name: str) -> str:
    base, sep, index = name.partition(":")
    if sep and index.strip() == "0":
        return base
    return name


@dataclass
class AuthList:
    """Who may send the commands a CSC lists in ``auth_commands``.

    Rule: the CSC's own identity is always allowed. An identity with ``@`` is a user: allowed if
    ``authorized_users`` is empty (no list set yet) or names it. Any other identity is a CSC
    (``name[:index]``): allowed unless ``non_authorized_cscs`` names it. (ts_salobj, when its auth lists are
    enabled, refuses every user not listed; here an empty user list means "no restriction yet".)
    """

    authorized_users: set[str] = field(default_factory=set)
    non_authorized_cscs: set[str] = field(default_factory=set)

    def update(self, authorized_users: str, non_authorized_cscs: str) -> None:
        """Apply a ``setAuthList`` command (a leading + adds, - removes, otherwise replaces).

        Parameters
        ----------
        authorized_users : `str`
            Comma-separated ``user@host`` names, optionally led by ``+`` (add) or ``-`` (remove); otherwise
            they replace the list.
        non_authorized_cscs : `str`
            Comma-separated ``name[:index]`` CSC names (``:0`` is dropped), with the same leading ``+``/``-``
            rule.

        Raises
        ------
        ExpectedError
            If a user name lacks ``@`` or a CSC name contains ``@``.
        """
        op, users = _parse_names(authorized_users)
        bad = [u for u in users if "@" not in u]
        if bad:
            raise ExpectedError(f"authorizedUsers must be user@host; bad: {bad}")
        users_set = set(users)
        op_csc, cscs = _parse_names(non_authorized_cscs)
        bad = [c for c in cscs if "@" in c]
        if bad:
            raise ExpectedError(f"nonAuthorizedCSCs must be name[:index]; bad: {bad}")
        cscs_set = {_normalize_csc(c) for c in cscs}
        self.authorized_users = _apply(op, self.authorized_users, users_set)
        self.non_authorized_cscs = _apply(op_csc, self.non_authorized_cscs, cscs_set)

    def is_authorized(self, identity: str, own_identity: str) -> bool:
        """Return True if ``identity`` may send a command that needs authorisation.

        Parameters
        ----------
        identity : `str`
            ``private_identity`` of the command: ``user@host`` for a user, ``name[:index]`` for a CSC.
        own_identity : `str`
            The CSC's own identity (``name`` or ``name:index``), always allowed.
        """
        if identity == own_identity:
            return True
        if "@" in identity:
            return not self.authorized_users or identity in self.authorized_users
        if not identity:
            return False
        return _normalize_csc(identity) not in self.non_authorized_cscs

    @property
    def users_str(self) -> str:
        return ", ".join(sorted(self.authorized_users))

    @property
    def cscs_str(self) -> str:
        return ", ".join(sorted(self.non_authorized_cscs))


def _apply(op: str, current: set[str], names: set[str]) -> set[str]:
    if op == "+":
        return current | names
    if op == "-":
        return current - names
    return set(names)
