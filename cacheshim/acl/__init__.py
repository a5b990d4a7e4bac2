"""Redis ACL users: the model (`users`), the replicated state (`state`), the checks of a
connection (`check`) and this shim's ACL LOG (`log`)."""
