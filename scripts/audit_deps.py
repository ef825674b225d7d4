"""Audit oda-fed's installed dependencies for known vulnerabilities (pip-audit), as `make test`
does last.

Fails (exit 1) when any installed package has a known vulnerability, naming each with its fix.
When the advisory service cannot be reached, or knows none of the packages (a private mirror),
it says so and does not fail: that is a fact about the network, not about the code. The
reference environment (.venv-ref: clkhash, anonlink and their old pins) is not audited; it is
never installed with oda-fed and runs only benchmarks and interop tests.
"""

from __future__ import annotations

import json
import subprocess
import sys


def main() -> int:
    command = [sys.executable, "-m", "pip_audit", "--skip-editable", "--format", "json",
               "--progress-spinner", "off"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        print("pip-audit: the advisory service could not be reached; dependencies not audited")
        print(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "")
        return 0
    packages = report.get("dependencies", [])
    audited = [p for p in packages if "skip_reason" not in p]
    vulnerable = [p for p in audited if p.get("vulns")]
    for p in vulnerable:
        for v in p["vulns"]:
            fixes = ", ".join(v.get("fix_versions", [])) or "no fixed version yet"
            print(f"{p['name']} {p['version']}: {v['id']} (fixed in {fixes})")
    if vulnerable:
        print(f"pip-audit: {len(vulnerable)} installed package(s) have known vulnerabilities")
        return 1
    if not audited:
        print(f"pip-audit: the advisory service knows none of the {len(packages)} packages "
              "(a private mirror?); dependencies not audited")  # fmt: skip
        return 0
    print(f"pip-audit: no known vulnerabilities in {len(audited)} audited package(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
