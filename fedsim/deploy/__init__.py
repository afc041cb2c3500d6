"""Edge deployment through Flower's SuperLink and SuperNodes (issue 25).

* :mod:`fedsim.deploy.certs` — a CA and a server certificate for the SuperLink's TLS, and
  SuperNode authentication key pairs (``fedsim deploy certs`` / ``keys``);
* :mod:`fedsim.deploy.processes` — the ``flower-superlink`` / ``flower-supernode`` command
  lines fedsim starts, and registering SuperNode public keys (``fedsim deploy superlink`` /
  ``supernode``);
* :mod:`fedsim.deploy.serverapp` and :mod:`fedsim.deploy.submit` — the ServerApp a deployed
  run executes and ``fedsim deploy run``, which submits it through Flower's run API and
  follows it.
"""
