"""``python -m fedsim`` is the ``fedsim`` command."""

from fedsim.cli import app

app(prog_name="fedsim")
