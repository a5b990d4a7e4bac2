"""The shim's parameters: the CONFIG table with validation and storage (`serverconfig`), and
the defaults of the parameters it accepts but does not act on (`defaults`)."""
