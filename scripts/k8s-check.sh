#!/usr/bin/env bash
# k8s-check.sh - offline checks of the Kubernetes manifests (docker/k8s):
#  * `kubectl kustomize docker/k8s` renders (with a throwaway token.env);
#  * every Lumen container runs a role docker/entrypoint.sh knows, and the
#    binary of that role accepts its configuration: lumen.cfg (the ConfigMap)
#    plus the container's environment, checked by the binary itself
#    (`lumen-<role> --config ... --print-config` in exactly that environment);
#  * every environment variable is one something reads (the config loader's
#    names as --print-config lists them, the example's, the entrypoint's);
#  * container ports are the ports the services listen on, Services point at
#    them, and redis/scheduler/objstore addresses name those Services;
#  * every probe is `lumen health 127.0.0.1:<that container's port>` and the
#    `lumen` binary accepts its arguments;
#  * images: the Lumen image everywhere, with a numeric USER (runAsNonRoot),
#    and the same Redis image as docker-compose.yml.
#   scripts/k8s-check.sh [BIN_DIR]     (default build/bin: the binaries to ask)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/build/bin}

die() {
  echo "k8s-check: FAILED: $*" >&2
  exit 1
}
command -v kubectl >/dev/null || die "kubectl is missing (scripts/deps.sh install)"
for b in lumen lumen-scheduler lumen-objstore lumen-worker most_frequent_word; do
  [ -x "$bin/$b" ] || die "$bin/$b is missing: build first (scripts/build.sh)"
done
python=""
for p in python3 /usr/bin/python3; do
  if "$p" -c 'import yaml' 2>/dev/null; then
    python=$p
    break
  fi
done
[ -n "$python" ] || die "python3 with PyYAML is missing (scripts/deps.sh install)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lumen-k8s-check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp -r "$root/docker/k8s" "$tmp/k8s"
echo "LUMEN_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >"$tmp/k8s/token.env"
kubectl kustomize "$tmp/k8s" >"$tmp/rendered.yaml" 2>"$tmp/kustomize.err" ||
  die "kubectl kustomize docker/k8s does not render: $(cat "$tmp/kustomize.err")"
echo "k8s-check: kubectl kustomize docker/k8s renders ($(grep -c '^kind:' "$tmp/rendered.yaml") objects, kubectl $(kubectl version --client 2>/dev/null | head -1 | grep -oE 'v[0-9]+\.[0-9]+' | head -1))"

"$python" - "$root" "$bin" "$tmp/rendered.yaml" "$tmp/k8s/token.env" <<'EOF'
import os, re, subprocess, sys, yaml

root, bindir, rendered, token_env = sys.argv[1:]
errors = []
def err(msg): errors.append(msg)

docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
secrets = {d["metadata"]["name"]: d for d in by_kind.get("Secret", [])}
configmaps = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}

ROLES = {"scheduler": "lumen-scheduler", "objstore": "lumen-objstore", "worker": "lumen-worker"}
entrypoint = open(os.path.join(root, "docker/entrypoint.sh")).read()
dockerfile = open(os.path.join(root, "docker/Dockerfile")).read()
compose = yaml.safe_load(open(os.path.join(root, "docker-compose.yml")))
cfg_file = os.path.join(root, "docker/k8s/lumen.cfg")
config_dir = os.path.dirname(re.search(r"LUMEN_CONFIG:-([^}]+)\}", entrypoint).group(1))

def run(args, env=None):
    return subprocess.run(args, env=env, capture_output=True, text=True)

def env_names(text):
    return set(re.findall(r"\bLUMEN_[A-Z0-9_]+\b", text))

def default_of(value):  # "${NAME:-default}" -> default
    m = re.fullmatch(r"\$\{[A-Z_]+:-([^}]*)\}", value)
    return m.group(1) if m else value

def image_name(image):
    return image.rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image

# Images: one Lumen image (compose's), run as a numeric user; compose's Redis.
lumen_image = default_of(compose["services"]["scheduler"]["image"])
redis_image = default_of(compose["services"]["redis"]["image"])
if not re.search(r"^USER [0-9]+(:[0-9]+)?$", dockerfile, re.M):
    err("docker/Dockerfile: USER must be numeric for runAsNonRoot")

# Names the config loader reads, as the binary itself lists them.
out = run([os.path.join(bindir, "lumen-worker"), "--print-config"], env={"PATH": "/usr/bin:/bin"})
loader_env = env_names(out.stdout)
if "LUMEN_TOKEN" not in loader_env or "LUMEN_ADVERTISE_ADDR" not in loader_env:
    err("lumen-worker --print-config does not list the environment variables (LUMEN_TOKEN, LUMEN_ADVERTISE_ADDR)")
example_env = env_names(run([os.path.join(bindir, "most_frequent_word"), "--help"]).stdout) | env_names(entrypoint)

token = dict(l.strip().split("=", 1) for l in open(token_env) if "=" in l)

def container_env(c, where):
    env = {"PATH": bindir + ":/usr/bin:/bin"}
    for e in c.get("envFrom", []):
        ref = e.get("secretRef") or e.get("configMapRef")
        src = secrets if "secretRef" in e else configmaps
        if ref is None or ref["name"] not in src:
            err(f"{where}: envFrom names {ref and ref['name']}, which is not generated")
            continue
        for k in src[ref["name"]].get("data", {}):
            env[k] = token.get(k, "x")
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
            env[e["name"]] = "10.1.2.3"
        else:
            err(f"{where}: env {e['name']}: only values and the pod IP are expected")
    return env

def section(printed, name):
    m = re.search(r"^%s = \{(.*?)^\};" % name, printed, re.M | re.S)
    return dict(re.findall(r'^\s+(\w+) = "?([^";]*)"?;', m.group(1), re.M)) if m else {}

def port_of(addr):
    return int(addr.rsplit(":", 1)[1])

pods = []  # (labels, {port name or number: containerPort})
effective = {}  # role -> printed config
seen_roles = set()
for kind in ("Deployment", "StatefulSet", "Job"):
    for w in by_kind.get(kind, []):
        tpl = w["spec"]["template"]
        spec = tpl["spec"]
        wname = f"{kind}/{w['metadata']['name']}"
        ports, client = {}, None
        for c in spec["containers"]:
            where = f"{wname} container {c['name']}"
            for p in c.get("ports", []):
                ports[p["containerPort"]] = p["containerPort"]
                if "name" in p:
                    ports[p["name"]] = p["containerPort"]
            args = c.get("args", [])
            if image_name(c["image"]) == image_name(redis_image):
                if c["image"] != redis_image:
                    err(f"{where}: image {c['image']}, docker-compose.yml runs {redis_image}")
                if "--appendonly" not in args:
                    err(f"{where}: Redis without persistence (--appendonly yes)")
                continue
            if c["image"] != lumen_image:
                err(f"{where}: image {c['image']}, not the Lumen image {lumen_image}")
            if c.get("imagePullPolicy") != "IfNotPresent":
                err(f"{where}: imagePullPolicy should be IfNotPresent (locally loaded images)")
            if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
                err(f"{where}: runAsNonRoot is not set")
            role = args[0] if args else None
            env = container_env(c, where)
            if role == "example":
                for name in env:
                    if name.startswith("LUMEN_") and name not in example_env | loader_env:
                        err(f"{where}: nothing reads {name}")
                client = {"LUMEN_ADDRESS": env.get("LUMEN_ADDRESS", "")}
                continue
            if role not in ROLES:
                err(f"{where}: args {args}: the entrypoint's roles are {sorted(ROLES)} and example")
                continue
            seen_roles.add(role)
            for name in env:
                if name.startswith("LUMEN_") and name not in loader_env:
                    err(f"{where}: the config loader reads no {name}")
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            vols = {v["name"]: v for v in spec.get("volumes", [])}
            cm = vols.get(mounts.get(config_dir, ""), {}).get("configMap", {}).get("name")
            if cm not in configmaps or "lumen.cfg" not in configmaps[cm].get("data", {}):
                err(f"{where}: lumen.cfg (the ConfigMap) is not mounted at {config_dir}")
            elif configmaps[cm]["data"]["lumen.cfg"] != open(cfg_file).read():
                err(f"{where}: the ConfigMap's lumen.cfg is not docker/k8s/lumen.cfg")
            # The binary checks the configuration the container would run with.
            r = run([os.path.join(bindir, ROLES[role]), "--config", cfg_file, "--print-config"], env=env)
            if r.returncode != 0:
                err(f"{where}: {ROLES[role]} refuses its configuration: {r.stderr.strip()}")
                continue
            effective[role] = r.stdout
            mine = section(r.stdout, role)
            listen = port_of(mine["listen"])
            want = {listen} | ({int(mine["dashboard_port"])} if role == "scheduler" else set())
            have = {p["containerPort"] for p in c.get("ports", [])}
            if have != want:
                err(f"{where}: containerPorts {sorted(have)}, but {ROLES[role]} listens on {sorted(want)}")
            if role != "scheduler" and env.get("LUMEN_ADVERTISE_ADDR") != "10.1.2.3":
                err(f"{where}: LUMEN_ADVERTISE_ADDR should be the pod IP (downward API status.podIP)")
            if not c.get("resources", {}).get("requests"):
                err(f"{where}: no resource requests")
            for probe in ("readinessProbe", "livenessProbe"):
                cmd = c.get(probe, {}).get("exec", {}).get("command")
                if not cmd:
                    err(f"{where}: no {probe}")
                    continue
                if cmd[:2] != ["lumen", "health"] or cmd[2] != f"127.0.0.1:{listen}":
                    err(f"{where}: {probe} {cmd} should be lumen health 127.0.0.1:{listen}")
                # Exit 2 means bad arguments; 0/1 mean it asked (nothing listens here).
                r = run([os.path.join(bindir, "lumen")] + cmd[1:], env=env)
                if r.returncode == 2:
                    err(f"{where}: lumen refuses the {probe}'s arguments: {r.stderr.strip()}")
        pods.append((tpl["metadata"].get("labels", {}), ports, client))
for role in ROLES:
    if role not in seen_roles:
        err(f"no container runs the {role}")

# Services: selectors match pods, targetPorts are their ports, and the
# addresses in the configuration name the Services and their ports.
services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
for name, s in services.items():
    sel = s["spec"].get("selector", {})
    matched = [p for p in pods if all(p[0].get(k) == v for k, v in sel.items())]
    if not matched:
        err(f"Service/{name}: its selector matches no pod")
    for p in s["spec"]["ports"]:
        target = p.get("targetPort", p["port"])
        for labels, ports, _ in matched:
            if target not in ports:
                err(f"Service/{name} port {p['port']}: targetPort {target} is no port of its pods")
if "objstore" in services and services["objstore"]["spec"].get("clusterIP") != "None":
    err("Service/objstore should be headless (clusterIP: None)")
if "scheduler" in effective:
    cl, sc = section(effective["scheduler"], "cluster"), section(effective["scheduler"], "scheduler")
    wanted = [("redis_addr", cl["redis_addr"]), ("scheduler_addr", cl["scheduler_addr"])]
    if "worker" in effective:
        wanted.append(("objstore_addr", section(effective["worker"], "worker")["objstore_addr"]))
    for key, addr in wanted:
        host, port = addr.rsplit(":", 1)
        svc = services.get(host)
        if svc is None:
            err(f"{key} = {addr}: there is no Service {host}")
        elif int(port) not in [p["port"] for p in svc["spec"]["ports"]]:
            err(f"{key} = {addr}: Service/{host} has no port {port}")
    if sc.get("dashboard_port") and int(sc["dashboard_port"]) not in [p["port"] for p in services.get("scheduler", {"spec": {"ports": []}})["spec"]["ports"]]:
        err("Service/scheduler does not expose the dashboard port")
    for labels, ports, client in pods:
        if client is not None and client["LUMEN_ADDRESS"] != cl["scheduler_addr"]:
            err(f"the example's LUMEN_ADDRESS {client['LUMEN_ADDRESS']} is not scheduler_addr {cl['scheduler_addr']}")

for w in by_kind.get("StatefulSet", []):
    if w["metadata"]["name"] == "redis" and not w["spec"].get("volumeClaimTemplates"):
        err("StatefulSet/redis has no volume for its data")

if errors:
    for e in errors:
        print("k8s-check: " + e, file=sys.stderr)
    sys.exit(1)
print(f"k8s-check: images, ports, environment and probes match the binaries "
      f"({len(pods)} pod templates, {len(services)} services)")
EOF
