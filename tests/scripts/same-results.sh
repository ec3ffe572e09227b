#!/usr/bin/env bash
# Shows that a change of structure changed no result: builds `hudd` at BASE (a git revision) and at
# the working tree, runs both on the committed fixtures and the small demo, and compares every file
# they write byte for byte.
#
#   tests/scripts/same-results.sh BASE [WORK_DIR]
#
# Compared: results/*.csv, summary.json, heatmaps (index.json and every .npy), distances, clusters.json,
# run.json, cluster folders, GIFs, overlays, and every file of the report bundles. JSON files are
# compared as values with these fields set aside: timings (wall-clock; timings.json only has to
# exist on both sides), started_unix_s,
# format_version and hudd_version (schema version fields), and the hashes that cover them
# (report_id, the bundle manifest's entries for report.json and index.html). index.html inlines
# report.json and is compared with that JSON taken out, unless the embedded viewer itself differs
# between the revisions. Keys that issue 11 §4 adds (`output_layer`, `excluded`) are set aside
# where the base lacks them. Exit 0 when everything else is identical.
set -euo pipefail

base=${1:?usage: tests/scripts/same-results.sh BASE [WORK_DIR]}
repo=$(git rev-parse --show-toplevel)
work=${2:-$(mktemp -d /tmp/hudd-same.XXXXXX)}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target}
mkdir -p "$work/bin"

build() { # build REVISION_DIR NAME TARGET_DIR
  (cd "$1" && CARGO_TARGET_DIR="$3" cargo build --release -q -p hudd-cli)
  cp "$3/release/hudd" "$work/bin/hudd-$2"
}

if [ ! -x "$work/bin/hudd-base" ]; then
  rm -rf "$work/base-tree"
  git -C "$repo" worktree add --detach "$work/base-tree" "$base" >/dev/null
  # A target folder of its own: cargo judges a path package fresh by file times, so the base's
  # build would otherwise pass for a build of working-tree files edited before it.
  build "$work/base-tree" base "$work/target-base"
  git -C "$repo" worktree remove --force "$work/base-tree"
fi
build "$repo" new "$CARGO_TARGET_DIR"

# Every run uses the same binary path and output paths, so that recorded command lines agree.
runs() {
  local hudd="$work/bin/hudd" out="$work/out" fx="$repo/tests/fixtures"
  rm -rf "$out"
  mkdir -p "$out"
  "$hudd" analyze -m "$repo/models/fashion-mnist/fmnist_cnn.onnx" -c "$repo/models/fashion-mnist/hudd.toml" \
    -d "$fx/fmnist" -o "$out/fmnist" -q >"$out/fmnist.stdout"
  "$hudd" demo --size small -o "$out/demo" -q >"$out/demo.stdout"
  "$hudd" simulate landmarks --train 0 --test 300 --improvement 0 --seed 11 -o "$out/lm-data" -q
  "$hudd" analyze -m "$repo/models/landmarks/landmarks_cnn.onnx" -c "$repo/models/landmarks/hudd.toml" \
    -d "$out/lm-data" -o "$out/landmarks" -q >"$out/landmarks.stdout"
  for m in bn_residual depthwise misc_ops; do
    for p in hudd epsilon-plus epsilon-gamma-box epsilon-alpha2-beta1 epsilon-plus-flat; do
      "$hudd" heatmaps -m "$fx/models/$m.onnx" -c "$repo/models/fashion-mnist/hudd.toml" -i "$fx/fmnist/test" \
        --preset "$p" --layers all -o "$out/heatmaps-$m-$p" -q >/dev/null
    done
  done
  "$hudd" heatmaps -m "$fx/models/keras_nhwc.onnx" -c "$repo/models/fashion-mnist/hudd.toml" --set input.layout=nhwc \
    -i "$fx/fmnist/test" --layers all -o "$out/heatmaps-keras" -q >/dev/null
  "$hudd" cluster --heatmaps "$fx/cluster/heatmaps" -o "$out/cluster-hudd" -q >/dev/null
  "$hudd" cluster --heatmaps "$fx/cluster/heatmaps" --linkage average --normalize cosine -o "$out/cluster-average" -q >/dev/null
}

for side in base new; do
  cp "$work/bin/hudd-$side" "$work/bin/hudd"
  echo "running $side …"
  runs
  rm -rf "${work:?}/$side"
  mv "$work/out" "$work/$side"
done

viewer_same=yes
git -C "$repo" diff --quiet "$base" -- viewer/dist viewer/assets || viewer_same=no
python3 - "$work/base" "$work/new" "$viewer_same" <<'EOF'
import json, os, re, sys

base, new, viewer_same = sys.argv[1], sys.argv[2], sys.argv[3] == "yes"
VOLATILE = {"timings", "started_unix_s", "format_version", "hudd_version", "report_id", "seconds"}
# Keys added by the one deliberate change of results (issue 11 §4: the explained output is
# recorded and never the best layer); set aside when the base has no such key.
ADDED = {"output_layer", "excluded"}

def files(root):
    out = set()
    for d, _, fs in os.walk(root):
        for f in fs:
            out.add(os.path.relpath(os.path.join(d, f), root))
    return out

def scrub(v):
    if isinstance(v, dict):
        return {k: scrub(x) for k, x in v.items() if k not in VOLATILE}
    if isinstance(v, list):
        return [scrub(x) for x in v]
    return v

def drop_added(v, ref):
    if isinstance(v, dict):
        return {k: drop_added(x, ref.get(k) if isinstance(ref, dict) else None)
                for k, x in v.items() if not (k in ADDED and not (isinstance(ref, dict) and k in ref))}
    if isinstance(v, list):
        return [drop_added(x, ref[i] if isinstance(ref, list) and i < len(ref) else None) for i, x in enumerate(v)]
    return v

def load(path, rel):
    raw = open(path, "rb").read()
    name = os.path.basename(rel)
    if name == "index.html" and not viewer_same:
        return None  # the embedded viewer changed on purpose between the two revisions
    if name == "index.html":
        # The inlined report JSON is compared as report.json; the rest of the page byte for byte.
        return re.sub(rb'(<script id="hudd-report" type="application/json">).*?(</script>)', rb"\1\2", raw, flags=re.S)
    if name == "timings.json":
        return None  # wall-clock seconds only: present on both sides is all that can agree
    if name.endswith(".json"):
        v = scrub(json.loads(raw))
        if name == "manifest.json" and isinstance(v, dict) and isinstance(v.get("files"), list):
            v["files"] = [f for f in v["files"] if f.get("path") not in ("report.json", "index.html")]
        return v
    if name.endswith(".stdout"):
        # Printed timings vary run to run.
        return re.sub(rb"[0-9.]+ ?(s|ms)\b", b"<time>", raw)
    return raw

fb, fn = files(base), files(new)
bad = 0
for f in sorted(fb ^ fn):
    print(f"only in {'base' if f in fb else 'new'}: {f}")
    bad += 1
same = 0
for f in sorted(fb & fn):
    a, b = load(os.path.join(base, f), f), load(os.path.join(new, f), f)
    if isinstance(a, dict) or isinstance(a, list):
        b = drop_added(b, a)
    if a != b:
        print(f"differs: {f}")
        bad += 1
    else:
        same += 1
print(f"{same} files identical, {bad} differences")
sys.exit(1 if bad else 0)
EOF
