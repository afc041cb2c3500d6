"""The registry lists the built-in plugins lazily ("module:attribute") and imports a plugin's
module on first use; its list agrees with the decorators in the source."""

import pytest

from fedsim.plugins import builtin_targets
from fedsim.registry import BUILTIN, ENGINES, TASKS, LazyRef, Registry, UnknownNameError


def test_the_lazy_list_is_what_the_decorators_register():
    found = builtin_targets()
    assert {kind: BUILTIN[kind] for kind in found} == found
    for name, target in BUILTIN["engine"].items():  # engines are not in `fedsim list`: resolve them
        engine = ENGINES.get(name)
        assert (f"{engine.__module__}:{engine.__qualname__}", engine.name) == (target, name)


def test_a_lazy_entry_is_named_without_import_and_imported_on_first_get():
    things = Registry("thing")
    things.register_lazy("dumps", "json:dumps")

    assert things.names() == ["dumps"] and not things.is_loaded("dumps")
    assert things.describe() == {}  # nothing imported yet: nothing described

    import json

    assert things.get("dumps") is json.dumps and things.is_loaded("dumps")
    assert things.describe()["dumps"] == json.dumps.__doc__.strip().splitlines()[0]


def test_the_decorator_of_the_referenced_object_takes_its_lazy_name():
    things = Registry("thing")

    def made() -> None:
        """A factory."""

    things.register_lazy("made", f"{__name__}:{made.__qualname__}")
    assert things.register("made")(made) is made
    assert things.get("made") is made


def test_a_plugin_cannot_take_a_registered_or_listed_name():
    things = Registry("thing")
    things.register_lazy("dumps", "json:dumps")

    with pytest.raises(ValueError, match="thing 'dumps' is registered twice"):
        things.register("dumps")(lambda: None)
    with pytest.raises(ValueError, match="task 'synthetic' is registered twice"):
        TASKS.register("synthetic")(type("Imposter", (), {}))
    assert isinstance(TASKS._entries["synthetic"], (type, LazyRef))  # the built-in is still there


def test_an_unknown_name_lists_the_registered_ones():
    things = Registry("thing")
    things.register_lazy("b", "json:dumps")
    things.register_lazy("a", "json:loads")

    with pytest.raises(UnknownNameError, match="unknown thing 'c'; choose one of: a, b"):
        things.get("c")
