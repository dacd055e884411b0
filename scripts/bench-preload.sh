#!/usr/bin/env bash
# bench-preload.sh [WORKDIR]: preloads a 3-service compose release (~300 MB of layers, incompressible, in
# docker save archives) into a 4 GiB disk image with `hostos preload`, and loads the same archives with
# `docker load` into a fresh Debian dockerd (its own data root, started before the clock runs). The two
# run interleaved, pair by pair (A B A B ...), PAIRS pairs (default 5); printed: the median of the per-pair
# ratios hostos/docker with their min and max, and hostos's peak RSS (/usr/bin/time -v) at ~300 MB and
# ~1 GB of layers. Targets (printed, not asserted): ratio <= 1.0; peak RSS <= 64 MiB. Needs root (dockerd).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${1:-${TMPDIR:-/tmp}/hostos-bench-preload}
wd=$(mkdir -p "$W" && cd "$W" && pwd) || { echo "$(basename "$0"): cannot use $W as the work directory" >&2; exit 2; }
W=$wd
hostos=${HOSTOS:-$repo/out/hostos}
pairs=${PAIRS:-5}
docker=/usr/bin/docker
[ -x "$docker" ] || docker=$(command -v docker || true)
for t in "$hostos" dockerd "$docker" python3 /usr/bin/time; do
	command -v "$t" >/dev/null || { echo "bench-preload: $t not found (make hostos; scripts/install-deps.sh)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "bench-preload: dockerd needs root" >&2; exit 2; }

cat >"$W/spec.toml" <<'TOML'
device_type = "genericx86-64-ext"
image_size_mib = 4096
TOML
[ -f "$W/disk.img" ] || "$hostos" build -q --spec "$W/spec.toml" -o "$W/disk.img" >/dev/null

HOSTOS=$hostos DOCKER=$docker exec python3 - "$W" "$pairs" <<'PY'
import hashlib, io, json, os, random, shutil, statistics, subprocess, sys, tarfile, tempfile, time

W, pairs = sys.argv[1], int(sys.argv[2])
hostos, docker = os.environ["HOSTOS"], os.environ["DOCKER"]

def layer(path, files, mib_each, seed):
    """A layer tar of `files` files of incompressible data; returns its diffID."""
    if not os.path.exists(path):
        rnd = random.Random(seed)
        with tarfile.open(path + ".tmp", "w", format=tarfile.PAX_FORMAT) as tw:
            for i in range(files):
                data = rnd.randbytes(mib_each << 20)
                ti = tarfile.TarInfo("data/%d-%d.bin" % (seed, i))
                ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
                tw.addfile(ti, io.BytesIO(data))
        os.rename(path + ".tmp", path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return "sha256:" + h.hexdigest()

def archive(path, tag, layers):
    """A docker save archive of one image made of layers [(file, diffID)]."""
    if os.path.exists(path):
        return
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "created": "2023-11-14T22:13:20Z",
                      "config": {"Cmd": ["/bin/true"]},
                      "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]}}).encode()
    cid = hashlib.sha256(cfg).hexdigest()
    with tarfile.open(path + ".tmp", "w") as tw:
        def add(name, data=None, src=None):
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            if src:
                ti.size = os.path.getsize(src)
                with open(src, "rb") as f:
                    tw.addfile(ti, f)
            else:
                ti.size = len(data)
                tw.addfile(ti, io.BytesIO(data))
        add(cid + ".json", cfg)
        names = []
        for f, d in layers:
            n = d[7:] + "/layer.tar"
            add(n, src=f)
            names.append(n)
        add("manifest.json", json.dumps([{"Config": cid + ".json", "RepoTags": [tag], "Layers": names}]).encode())
    os.rename(path + ".tmp", path)

def release(total_mib):
    """Three services sharing a base layer, ~total_mib of layers in all; returns (compose, [archives])."""
    d = os.path.join(W, "r%d" % total_mib)
    os.makedirs(d, exist_ok=True)
    base_mib = total_mib // 7
    app_mib = (total_mib - base_mib) // 3
    base = os.path.join(d, "base.tar")
    base_id = layer(base, 4, base_mib // 4, 1)
    archives, services = [], []
    for i in range(3):
        f = os.path.join(d, "app%d.tar" % i)
        fid = layer(f, 8, app_mib // 8, 10 + i)
        a = os.path.join(d, "svc%d.docker.tar" % i)
        archive(a, "bench/svc%d:1" % i, [(base, base_id), (f, fid)])
        archives.append(a)
        services.append("  svc%d:\n    image: bench/svc%d:1\n" % (i, i))
    compose = os.path.join(d, "docker-compose.yml")
    with open(compose, "w") as f:
        f.write('version: "2.1"\nservices:\n' + "".join(services))
    return compose, archives

def preload_args(img, compose, archives):
    a = [hostos, "preload", img, "--compose", compose, "-q"]
    for i, x in enumerate(archives):
        a += ["--images", "svc%d=%s" % (i, x)]
    return a

def run_hostos(compose, archives, rss=False):
    img = os.path.join(W, "work.img")
    subprocess.run(["cp", "--sparse=always", os.path.join(W, "disk.img"), img], check=True)
    args = preload_args(img, compose, archives)
    if rss:
        args = ["/usr/bin/time", "-v"] + args
    t = time.monotonic()
    p = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    took = time.monotonic() - t
    if p.returncode != 0:
        sys.exit("hostos preload failed: " + p.stderr)
    os.remove(img)
    if rss:
        for line in p.stderr.splitlines():
            if "Maximum resident set size" in line:
                return int(line.split(":")[1]) / 1024
    return took

def run_docker(archives):
    run = tempfile.mkdtemp(prefix="hostos-bench-engine-")
    root = os.path.join(W, "engine-root")
    shutil.rmtree(root, ignore_errors=True)
    sock = "unix://" + os.path.join(run, "d.sock")
    with open(os.path.join(run, "daemon.json"), "w") as f:
        f.write("{}")
    log = open(os.path.join(run, "dockerd.log"), "w")
    d = subprocess.Popen(["dockerd", "--data-root", root, "-s", "overlay2", "--bridge", "none", "--iptables=false",
                          "--ip6tables=false", "--exec-root", os.path.join(run, "exec"), "-H", sock,
                          "--pidfile", os.path.join(run, "pid"), "--config-file", os.path.join(run, "daemon.json")],
                         stdout=log, stderr=log, start_new_session=True)
    env = dict(os.environ, DOCKER_CONFIG=os.path.join(run, "client"))
    try:
        for _ in range(240):
            if subprocess.run([docker, "-H", sock, "version"], env=env, capture_output=True).returncode == 0:
                break
            if d.poll() is not None:
                sys.exit("dockerd exited; see " + log.name)
            time.sleep(0.25)
        else:
            sys.exit("dockerd did not answer")
        t = time.monotonic()
        for a in archives:
            subprocess.run([docker, "-H", sock, "load", "-q", "-i", a], env=env, check=True, stdout=subprocess.DEVNULL)
        return time.monotonic() - t
    finally:
        d.terminate()
        try:
            d.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(d.pid, 9)
            d.wait()
        subprocess.run(["sh", "-c", 'grep -o " %s[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l' % root],
                       check=False)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)

compose, archives = release(300)
layer_mb = sum(os.path.getsize(x) for x in [os.path.join(W, "r300", f) for f in os.listdir(os.path.join(W, "r300")) if f.endswith(".tar") and not f.startswith("svc")]) / 1e6
print("bench-preload: 3 services, %.0f MB of layers, into a 4 GiB image; %d interleaved pairs" % (layer_mb, pairs))
ratios = []
for i in range(pairs):
    a = run_hostos(compose, archives)
    b = run_docker(archives)
    ratios.append(a / b)
    print("  pair %d: hostos preload %.2f s, docker load %.2f s, ratio %.2f" % (i + 1, a, b, a / b))
print("hostos preload / docker load: median %.2f (min %.2f, max %.2f)   target <= 1.0"
      % (statistics.median(ratios), min(ratios), max(ratios)))
print("hostos preload peak RSS, ~300 MB of layers: %.1f MiB   target <= 64" % run_hostos(compose, archives, rss=True))
compose, archives = release(1024)
print("hostos preload peak RSS, ~1 GB of layers:   %.1f MiB   target <= 64" % run_hostos(compose, archives, rss=True))
PY
