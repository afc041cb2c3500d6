"""SSL task plugins. The built-in tasks are listed lazily in :data:`fedsim.registry.BUILTIN`:
a task's module is imported when the task is first asked for (:meth:`fedsim.registry.Registry.get`),
so a run imports only its own task's dependencies."""
