"""Extensions outside the package: a user's own losses, metrics, generators or datasets,
registered by importing their module. ``--plugin MODULE`` (a module name on the Python path,
or a ``.py`` file) and every installed package's ``colorbench.plugins`` entry point are
imported before the options are checked; config.json records the ``--plugin`` ones, so
every job, ``bench report`` and ``bench colorize`` import the same."""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

ENTRY_POINT_GROUP = "colorbench.plugins"


class PluginError(ValueError):
    """A plugin that cannot be imported; the message names it and the fix."""


def plugin_name(plugin: str) -> str:
    """How config.json records a plugin: a module name as given, a file by its absolute path
    (a job may start in another folder)."""
    return str(Path(plugin).resolve()) if plugin.endswith(".py") else plugin


def _import_file(path: Path):
    # a stable module name per file, so importing it twice registers nothing twice
    name = "colorbench_plugin_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


@functools.cache
def _installed_plugins() -> tuple[str, ...]:
    """Import the entry-point plugins of installed packages, once per process (reading every
    package's metadata is the slow part)."""
    loaded = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            point.load()
        except Exception as exc:  # noqa: BLE001 - a broken installed plugin is named, with its package
            raise PluginError(f"the installed plugin {point.name!r} ({point.value}, entry point group "
                              f"{ENTRY_POINT_GROUP}) failed to import: {type(exc).__name__}: {exc}; fix or "
                              "uninstall its package") from None
        loaded.append(point.value)
    return tuple(loaded)


def load_plugins(plugins=()) -> list[str]:
    """Import the entry-point plugins of installed packages, then each of ``plugins``;
    returns the names imported. Importing registers what they declare."""
    loaded = list(_installed_plugins())
    for plugin in plugins:
        try:
            if plugin.endswith(".py"):
                path = Path(plugin)
                if not path.is_file():
                    raise PluginError(f"--plugin {plugin}: no such file; give a .py file or a module name")
                _import_file(path.resolve())
            else:
                importlib.import_module(plugin)
        except PluginError:
            raise
        except ModuleNotFoundError as exc:
            raise PluginError(f"--plugin {plugin}: {exc}; put the module's folder on PYTHONPATH (every job "
                              "imports it too), install its package, or give its .py file") from None
        except Exception as exc:  # noqa: BLE001 - the plugin's own error, named with it
            raise PluginError(f"--plugin {plugin} failed to import: {type(exc).__name__}: {exc}") from None
        loaded.append(plugin)
    return loaded
