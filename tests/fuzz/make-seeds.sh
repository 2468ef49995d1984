#!/bin/bash
# Regenerates the seed corpora under tests/fuzz/corpus/ (committed):
#   make-seeds.sh BUILD_FUZZ_DIR
#   bus:    the calls a tray host and the control CLI make, produced by
#           fuzz_bus itself against the live applet objects
#           (VMO_FUZZ_WRITE_SEEDS), raw and as recipes;
#   qcow2:  headers of images real qemu-img writes (v3 and v2, with and
#           without backing file and format, relative backing, dirty bit);
#   config: the shipped example configuration and variants of it.
set -eu
build=$1
src=$(cd "$(dirname "$0")/../.." && pwd)
c=$src/tests/fuzz/corpus
rm -rf "$c/bus" "$c/qcow2"
mkdir -p "$c/bus" "$c/qcow2" "$c/config"
VMO_FUZZ_WRITE_SEEDS=$c/bus "$build/tests/fuzz_bus" 2>/dev/null

t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
qemu-img create -q -f qcow2 "$t/base.qcow2" 64M
qemu-img create -q -f raw "$t/base.raw" 1M
head_of() { head -c "${2:-4096}" "$1" >"$c/qcow2/$3"; }
qemu-img create -q -f qcow2 -F qcow2 -b "$t/base.qcow2" "$t/o1.qcow2"
head_of "$t/o1.qcow2" 4096 v3-backing-fmt
qemu-img create -q -f qcow2 -o compat=0.10 -F qcow2 -b "$t/base.qcow2" "$t/o2.qcow2"
head_of "$t/o2.qcow2" 4096 v2-backing-fmt
(cd "$t" && qemu-img create -q -f qcow2 -F raw -b base.raw o3.qcow2)
head_of "$t/o3.qcow2" 4096 v3-relative-raw
head_of "$t/base.qcow2" 4096 v3-no-backing
qemu-img create -q -f qcow2 -o cluster_size=512 -F qcow2 -b "$t/base.qcow2" "$t/o4.qcow2"
head_of "$t/o4.qcow2" 1024 v3-small-cluster
qemu-img create -q -f qcow2 -o lazy_refcounts=on -F qcow2 -b "$t/base.qcow2" "$t/o5.qcow2"
# Mark it dirty (incompatible feature bit 0 at offset 72..79) like a crash would.
printf '\x00\x00\x00\x00\x00\x00\x00\x01' | dd of="$t/o5.qcow2" bs=1 seek=72 conv=notrunc status=none
head_of "$t/o5.qcow2" 4096 v3-dirty
qemu-img create -q -f qcow2 -o data_file="$t/data.raw",data_file_raw=on "$t/o6.qcow2" 1M
head_of "$t/o6.qcow2" 4096 v3-external-data

cp "$src/doc/vmoverlay.conf.example" "$c/config/example.conf"
cat >"$c/config/explicit.conf" <<'CONF'
connect = "qemu:///session";
reconcile_interval = 0;
qemu_img = "/usr/bin/qemu-img";
keep_discarded = false;
vms = (
  { name = "lab"; overlay = "/etc/hostname"; base = "/etc/hosts"; policy = "keep"; },
  { name = "kiosk"; policy = "discard"; disk = "sdb"; },
  { name = "w\u00efn10 \"x\""; policy = "commit"; }
);
CONF
cat >"$c/config/errors.conf" <<'CONF'
connect = "";
reconcile_interval = -5;
qemu_img = "relative/qemu-img";
keep_discarded = 1;
unknown_key = 3;
vms = (
  { name = ""; },
  { policy = "sometimes"; },
  { name = "a"; disk = "VDA"; overlay = "rel.qcow2"; base = "/nonexistent"; },
  { name = "a"; },
  "not a group"
);
CONF
cat >"$c/config/include.conf" <<'CONF'
@include "vmoverlay.conf"
reconcile_interval = 9999999999;
CONF
printf 'vms = ( { name = "x" ' >"$c/config/syntax.conf"
# Regression: libconfig 1.5 exit(2)ed on an @include of a directory.
printf '@include ""\nvms = ();\n' >"$c/config/include-dir.conf"
ls "$c"/* | wc -l
