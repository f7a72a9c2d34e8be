"""Every public name of the package has a docstring: in every module of cellsearch, each top-level
function and class that the module defines and whose name does not start with ``_``, and each public
method and property of those classes. A docstring inherited from a base class counts
(``inspect.getdoc``), so an override of a documented method needs none of its own. The command
functions of the CLI are such functions (their docstring is the command's ``--help``)."""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil

import cellsearch


def _modules() -> list[str]:
    names = ["cellsearch"]
    for info in pkgutil.walk_packages(cellsearch.__path__, prefix="cellsearch."):
        if not info.name.endswith(".__main__"):  # importing it runs the command line
            names.append(info.name)
    return sorted(names)


def _public_members(cls: type) -> list[tuple[str, object]]:
    """The public methods and properties (cached ones too) ``cls`` defines itself (not those it inherits unchanged)."""
    found = []
    for name, raw in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(raw, (staticmethod, classmethod)):
            raw = raw.__func__
        if inspect.isfunction(raw) or isinstance(raw, (property, functools.cached_property)):
            found.append((name, getattr(cls, name) if inspect.isfunction(raw) else raw))
    return found


def undocumented(module_name: str) -> list[str]:
    """The public names of one module that have no docstring, as dotted paths."""
    module = importlib.import_module(module_name)
    missing = []
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module_name:
            continue
        # (a decorated function, e.g. by functools.lru_cache, counts: it is a function underneath)
        if not (inspect.isfunction(inspect.unwrap(obj)) or inspect.isclass(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(f"{module_name}.{name}")
        if inspect.isclass(obj):
            for member_name, member in _public_members(obj):
                if not inspect.getdoc(member):
                    missing.append(f"{module_name}.{name}.{member_name}")
    return missing


def test_the_check_finds_a_missing_docstring():
    # the check itself can fail: a module with an undocumented function, class and method
    import sys
    import types

    fake = types.ModuleType("cellsearch._fake_for_docstring_test")
    exec("def f(): pass\nclass C:\n    '''documented'''\n    def m(self): pass\n"
         "    def _private(self): pass\nclass D(C):\n    '''documented'''\n    def m(self): pass\n", fake.__dict__)
    sys.modules[fake.__name__] = fake
    try:
        assert undocumented(fake.__name__) == [f"{fake.__name__}.f", f"{fake.__name__}.C.m", f"{fake.__name__}.D.m"]
    finally:
        del sys.modules[fake.__name__]


def test_every_public_name_has_a_docstring():
    missing = [path for module in _modules() for path in undocumented(module)]
    assert not missing, f"{len(missing)} public names without a docstring:\n" + "\n".join(missing)
