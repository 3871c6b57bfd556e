#!/usr/bin/env bash
# One source for the keys: the README's table (between <!-- keys:begin -->
# and <!-- keys:end -->) must name exactly the keys conf/loader.cpp accepts
# (its check_map lists), every documented default must load (the real
# binary's --check-config), and patroxy.yml(5), made from the table, must
# list every key.
#
#   package_docs_test.sh PATROXY_BINARY MAN_PAGE
set -euo pipefail
patroxy=${1:?patroxy binary}
man=${2:?patroxy.yml.5}
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$here" "$patroxy" "$man" "$work" <<'PY'
import re, subprocess, sys
here, patroxy, man, work = sys.argv[1:5]
readme = open(f"{here}/README.md", encoding="utf-8").read()
m = re.search(r"<!-- keys:begin -->(.*?)<!-- keys:end -->", readme, re.S)
assert m, "README.md has no keys table"
rows = []
for line in m.group(1).splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) < 4 or cells[0] in ("key",) or set(cells[0]) <= set("-"):
        continue
    rows.append((cells[0].strip("`"), cells[1], cells[2]))
documented = [r[0] for r in rows]
problems = []
dups = {k for k in documented if documented.count(k) > 1}
if dups:
    problems.append(f"keys listed twice: {sorted(dups)}")

# What the loader accepts: every check_map(node, path, {"a", "b", ...}) list in conf/.
import glob
src = "".join(open(f, encoding="utf-8").read() for f in sorted(glob.glob(f"{here}/conf/*.cpp")))
accepted = set()
for call in re.finditer(r'check_map\(\s*(\w+)\s*,\s*("?[\w.\[\]]*"?|\w+)\s*,\s*\{([^}]*)\}', src, re.S):
    node, path, keys = call.group(1), call.group(2).strip('"'), re.findall(r'"(\w+)"', call.group(3))
    if keys == ["bytes", "time", "return_below"]:
        continue   # listeners[].max_lag, documented as {bytes, time, return_below}
    if keys == ["username", "password"] or keys == ["ca", "cert", "key", "verify"] or keys == ["level"] and path == "log":
        if path == "log":
            accepted.update("log." + k for k in keys)
        continue   # sub-maps documented as {username, password} and {ca, cert, key, verify}
    prefix = {"": "", "path": None, "where": None}.get(path, path + ".")
    if prefix is None and path == "where":   # a section read at the top or in clusters[i]: dcs, health
        prefix = "dcs." if "hosts" in keys else "health."
    elif prefix is None:   # members[i], listeners[i] and clusters[i] share the variable name `path`
        prefix = "members[]." if "api" in keys else "clusters[]." if "dcs" in keys else "listeners[]."
    accepted.update(prefix + k for k in keys)
# The sections of the top level are documented by their keys.
accepted -= {"members", "listeners", "dcs", "health", "timeouts", "stats", "vip", "log", "clusters"}
missing = sorted(accepted - set(documented))
extra = sorted(set(documented) - accepted)
if missing:
    problems.append(f"accepted by conf/loader.cpp but not in the README's table: {missing}")
if extra:
    problems.append(f"in the README's table but not accepted by conf/loader.cpp: {extra}")

# Each documented literal default loads.
base_member = {"name": "pg0", "host": "10.0.0.1", "api": '"http://10.0.0.1:8008"'}
base_listener = {"name": "a", "role": "write", "port": "5000"}
def yaml(member, listener, sections, top):
    y = [f"{k}: {v}" for k, v in top.items()]
    y.append("members:\n  - {" + ", ".join(f"{k}: {v}" for k, v in member.items()) + "}")
    y.append("listeners:\n  - {" + ", ".join(f"{k}: {v}" for k, v in listener.items()) + "}")
    for s, kv in sections.items():
        y.append(f"{s}:\n" + "".join(f"  {k}: {v}\n" for k, v in kv.items()).rstrip("\n"))
    return "\n".join(y) + "\n"
checked = 0
for key, default, _ in rows:
    lit = re.fullmatch(r"`([^`]*)`", default)
    if not lit:
        continue
    value = lit.group(1)
    value = value if value not in ("",) else "''"
    # A small maxconn: the defaults load whatever this shell's descriptor limit.
    member, listener, sections, top = dict(base_member), dict(base_listener), {}, {"maxconn": "100"}
    if key == "maxconn":
        listener["maxconn"] = "100"
    if key.startswith("clusters[]."):
        continue   # loaded by the clusters example in the README (tests/conf_test.cpp)
    if key.startswith("members[]."):
        member[key.split(".", 1)[1]] = value
    elif key.startswith("listeners[]."):
        listener[key.split(".", 1)[1]] = value
    elif "." in key:
        s, k = key.split(".", 1)
        sections.setdefault(s, {})[k] = value
        if s == "dcs":
            sections[s] = {"type": "etcd3", "hosts": '["10.0.0.5:2379"]'} | {k: value}
        if s == "vip":
            sections[s] = {"interface": "eth0", "address": "10.0.0.100/24"} | {k: value}
    else:
        top[key] = value
    path = f"{work}/k.yml"
    open(path, "w").write(yaml(member, listener, sections, top))
    r = subprocess.run([patroxy, "--check-config", path], capture_output=True, text=True)
    checked += 1
    if r.returncode != 0:
        problems.append(f"the documented default of {key} ({value}) does not load: {r.stderr.strip()}")

page = open(man, encoding="utf-8").read()
for key in documented:
    if "\\fB" + key.replace("-", "\\-") + "\\fR" not in page:
        problems.append(f"patroxy.yml(5) does not list {key}")
for p in problems:
    print("FAIL:", p)
print(f"{len(documented)} keys documented, {len(accepted)} accepted by the loader, {checked} defaults loaded")
sys.exit(1 if problems else 0)
PY
