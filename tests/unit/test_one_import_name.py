"""Issue 9: each module is imported under one name. Importing every module of the package
loads nothing as ``checks.*``, ``deploys.*`` or ``templates.*`` (the top-level links and entry
files of the checkout), and no file is loaded under two module names."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import importlib, json, os, pkgutil, sys
import mailmend
package = os.path.realpath(mailmend.__path__[0])
names = [m.name for m in pkgutil.walk_packages(mailmend.__path__, "mailmend.")]
for name in names:
    importlib.import_module(name)
files = {}
for name, module in list(sys.modules.items()):
    path = os.path.realpath(getattr(module, "__file__", None) or "/")
    if path.startswith(package + os.sep):  # a file of the package, whatever its module name
        files.setdefault(path, []).append(name)
print(json.dumps({"names": names, "loaded": sorted(sys.modules), "files": files}))
"""


def test_every_module_is_imported_under_one_name() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    found = json.loads(done.stdout)
    assert "mailmend.cli.main" in found["names"] and "mailmend.deploys.mail" in found["names"]
    assert len(found["names"]) > 60  # every module, not a few
    roots = {name.partition(".")[0] for name in found["loaded"]}
    assert not roots & {"checks", "deploys", "templates", "sandbox", "bench", "tests"}
    assert len(found["files"]) > 60
    twice = {path: names for path, names in found["files"].items() if len(names) > 1}
    assert not twice, twice
    assert all(name.startswith("mailmend") for names in found["files"].values() for name in names)
