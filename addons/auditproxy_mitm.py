"""mitmproxy script: `mitmdump -s addons/auditproxy_mitm.py --set auditproxy_policy=FILE`.

Loads the auditproxy add-on from the package next to this file, so it works from a
checkout without installing. `auditproxy run` adds the same add-on without this script.
"""

import sys
from pathlib import Path

_here = str(Path(__file__).resolve().parent)
if _here not in sys.path:
    # mitmproxy puts the script's folder on sys.path only while loading it; the package
    # imports lazily afterwards, so keep it there.
    sys.path.insert(0, _here)

from auditproxy.addon import AuditProxy  # noqa: E402

addons = [AuditProxy()]
