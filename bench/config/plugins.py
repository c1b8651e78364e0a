"""Extensions outside the package: a user's own losses, metrics, generators or datasets,
registered by importing their module. ``--plugin MODULE`` (a module name on the Python path,
or a ``.py`` file) and every installed package's ``colorbench.plugins`` entry point are
imported before the options are checked; config.json records the ``--plugin`` ones, so
every job, ``bench report`` and ``bench colorize`` import the same.

A plugin is part of a run's identity: config.json records each one's content digest
(``plugin_records``) and what the registries declared of the run's losses and metrics
(``declared_now``: each registry module adds its ``declarer``). A rerun, an extension or a
job under a changed plugin is refused by name (``plugin_changes``); a report under one
carries a caveat, and is refused where a metric's declared direction or kind changed."""
from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable

ENTRY_POINT_GROUP = "colorbench.plugins"


class PluginError(ValueError):
    """A plugin that cannot be imported; the message names it and the fix."""


def plugin_name(plugin: str) -> str:
    """How config.json records a plugin: a module name as given, a file by its absolute path
    (a job may start in another folder)."""
    return str(Path(plugin).resolve()) if plugin.endswith(".py") else plugin


def file_module_name(path: Path) -> str:
    """The module name a ``.py`` plugin is imported under: stable per file, so importing it
    twice registers nothing twice."""
    return "colorbench_plugin_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]


def _import_file(path: Path):
    name = file_module_name(path)
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


def load_plugins(plugins=(), recorded_in: Path | None = None) -> list[str]:
    """Import the entry-point plugins of installed packages, then each of ``plugins``;
    returns the names imported. Importing registers what they declare. ``recorded_in``: the
    config.json that lists them (a report's or a job's), named in the errors instead of an
    option the command does not have."""
    loaded = list(_installed_plugins())

    def where(plugin: str) -> str:
        return f"--plugin {plugin}" if recorded_in is None else f"the plugin {plugin} that {recorded_in} lists"

    def fix_for(plugin: str, fix: str) -> str:
        if recorded_in is None:
            return fix
        back = ("put the file back at that path" if plugin.endswith(".py")
                else "put the module's folder on PYTHONPATH, or install its package")
        return f"the run was made with it: {back}, then run this command again"

    for plugin in plugins:
        try:
            if plugin.endswith(".py"):
                path = Path(plugin)
                if not path.is_file():
                    fix = fix_for(plugin, "give a .py file or a module name")
                    raise PluginError(f"{where(plugin)}: no such file; {fix}")
                _import_file(path.resolve())
            else:
                importlib.import_module(plugin)
        except PluginError:
            raise
        except ModuleNotFoundError as exc:
            fix = ("put the module's folder on PYTHONPATH (every job imports it too), install its package, or give "
                   "its .py file")
            raise PluginError(f"{where(plugin)}: {exc}; {fix_for(plugin, fix)}") from None
        except Exception as exc:  # noqa: BLE001 - the plugin's own error, named with it
            raise PluginError(f"{where(plugin)} failed to import: {type(exc).__name__}: {exc}") from None
        loaded.append(plugin)
    return loaded


# --- a plugin as part of a run's identity -----------------------------------------------

def _module_files(plugin: str) -> list[Path]:
    """The source files a plugin is: a ``.py`` file, a module's file, or every ``.py`` file
    of a package's folder."""
    if plugin.endswith(".py"):
        return [Path(plugin)]
    try:
        spec = importlib.util.find_spec(plugin)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        return []
    origin = Path(spec.origin)
    if spec.submodule_search_locations:  # a package: all of it
        return sorted(origin.parent.rglob("*.py"))
    return [origin]


def plugin_digest(plugin: str) -> str | None:
    """SHA-256 over a plugin's source files (names and contents); None if none can be read."""
    files = _module_files(plugin)
    if not files:
        return None
    digest = hashlib.sha256()
    root = files[0].parent
    for path in files:
        try:
            content = path.read_bytes()
        except OSError:
            return None
        digest.update(str(path.relative_to(root) if path.is_relative_to(root) else path.name).encode() + b"\0")
        digest.update(content + b"\0")
    return digest.hexdigest()


def plugin_records(plugins=()) -> list[dict]:
    """What config.json records of the plugins a run depends on: each ``--plugin`` and each
    installed entry-point plugin, with its content digest."""
    records = [{"plugin": p, "sha256": plugin_digest(p)} for p in plugins]
    for value in _installed_plugins():
        module = value.split(":")[0]
        records.append({"plugin": module, "entry_point": value, "sha256": plugin_digest(module)})
    return records


def plugin_changes(recorded) -> list[str]:
    """The plugins whose content differs from what ``recorded`` (config.json's ``plugins``)
    says, each in a phrase naming it; empty for a run that recorded none (an earlier version)."""
    if not isinstance(recorded, list):
        return []
    changes = []
    for entry in recorded:
        if not isinstance(entry, dict) or not isinstance(entry.get("plugin"), str):
            continue
        was, now = entry.get("sha256"), plugin_digest(entry["plugin"])
        if was != now:
            state = "is gone" if now is None else f"changed (sha256 {str(was)[:12]}… then, {now[:12]}… now)"
            changes.append(f"the plugin {entry['plugin']} {state}")
    return changes


# Registries of what the run's numbers mean (the metrics' directions and kinds, the losses'
# declarations) add a function that describes their entries; config.json records it and a
# reader compares. Filled by the registry modules themselves, so this module imports none.
_DECLARERS: dict[str, Callable[[], dict[str, dict]]] = {}


def declarer(kind: str):
    """Decorate ``fn() -> {name: declared metadata}`` as registry ``kind``'s describer."""
    def wrap(fn):
        _DECLARERS[kind] = fn
        return fn
    return wrap


def declared_now(kind: str, names=None) -> dict[str, dict] | None:
    """Registry ``kind``'s declarations now (of ``names`` only, if given); None if that
    registry's module is not loaded in this process."""
    if kind not in _DECLARERS:
        return None
    everything = _DECLARERS[kind]()
    return {n: everything[n] for n in (everything if names is None else names) if n in everything}


def declaration_changes(recorded, kind: str) -> list[str]:
    """Which of ``kind``'s entries that config.json's ``declared`` records are declared
    otherwise now (or are gone), each in a phrase naming the entry and the fields."""
    was = (recorded or {}).get(kind) if isinstance(recorded, dict) else None
    now = declared_now(kind, list(was)) if isinstance(was, dict) else None
    if now is None:
        return []
    changes = []
    for name, then in was.items():
        if name not in now:
            changes.append(f"{kind[:-1]} {name!r} is no longer registered")
            continue
        fields = [f"{k} {then.get(k)!r} then, {now[name].get(k)!r} now" for k in sorted(set(then) | set(now[name]))
                  if then.get(k) != now[name].get(k)]
        if fields:
            changes.append(f"{kind[:-1]} {name!r} is declared otherwise ({'; '.join(fields)})")
    return changes


def module_of(plugin: str) -> str:
    """The module name a recorded plugin is imported under."""
    return file_module_name(Path(plugin).resolve()) if plugin.endswith(".py") else plugin


def plugins_for_reading(config: dict) -> list[str]:
    """The run's plugins a reader of its results needs: those that registered one of its
    metrics, its generator, or a loss whose head the generator carries. A plugin of loss
    terms only is left alone (a report need not import training code, nor fail on it). All
    of them for a run that recorded no declarations (an earlier version)."""
    plugins = list((config.get("options") or {}).get("plugin") or ())
    declared = config.get("declared")
    if not isinstance(declared, dict):
        return plugins
    entries = [*((declared.get("metrics") or {}).values()), *((declared.get("generators") or {}).values()),
               *(d for d in (declared.get("losses") or {}).values() if isinstance(d, dict) and d.get("generator_head"))]
    modules = {str(d.get("module")) for d in entries if isinstance(d, dict)}
    return [p for p in plugins if any(m == module_of(p) or m.startswith(module_of(p) + ".") for m in modules)]
