"""Edge deployment through Flower's SuperLink and SuperNodes (issues 25 and 36).

* :mod:`fedsim.deploy.certs` — a CA and a server certificate for the SuperLink's TLS, and
  SuperNode authentication key pairs (``fedsim deploy certs`` / ``keys``);
* :mod:`fedsim.deploy.processes` — the ``flower-superlink`` / ``flower-supernode`` command
  lines fedsim starts, and registering SuperNode public keys (``fedsim deploy superlink`` /
  ``supernode``);
* :mod:`fedsim.deploy.serverapp` and :mod:`fedsim.deploy.submit` — the ServerApp a deployed
  run executes and ``fedsim deploy run``, which submits it through Flower's run API and
  follows it;
* :mod:`fedsim.deploy.warm` — the submitted ClientApp: it hands each message to one warm
  fedsim process per box;
* :mod:`fedsim.deploy.boxes` — what each box did (``boxes.json``) and when ``deploy run``
  exits non-zero;
* :mod:`fedsim.deploy.service` — systemd units (``fedsim deploy unit``) from the templates in
  ``fedsim/deploy/units/``.
"""
