#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check asam-topo --json against nvidia-smi's CSV (name, memory, bus id).

usage: compare-smi.py topo.json smi.csv
where smi.csv is the output of
  nvidia-smi --query-gpu=name,memory.total,memory.reserved,pci.bus_id \
	--format=csv,noheader,nounits
Devices are matched by PCI bus id (CUDA and nvidia-smi may order them
differently).  nvidia-smi's memory.total includes what the driver
reserves for itself; cuDeviceTotalMem does not, so ours must equal
memory.total - memory.reserved.  Exit status 0 when every GPU agrees.
"""
import json
import sys


def norm_bus(s):
    dom, bus, rest = s.strip().lower().split(":")
    dev, fn = rest.split(".")
    return "%04x:%02x:%02x.%x" % (int(dom, 16), int(bus, 16), int(dev, 16), int(fn, 16))


def main():
    topo = json.load(open(sys.argv[1]))
    smi = {}
    for line in open(sys.argv[2]):
        if not line.strip():
            continue
        name, mem, reserved, bus = [f.strip() for f in line.split(",")]
        smi[norm_bus(bus)] = (name, int(mem), int(reserved))
    devs = topo["cuda"]["devices"]
    bad = 0
    if len(devs) != len(smi):
        print("FAIL: asam-topo sees %d GPUs, nvidia-smi %d" % (len(devs), len(smi)))
        bad += 1
    for d in devs:
        bus = d["pci_bus_id"]
        if bus not in smi:
            print("FAIL cuda:%d: bus %s unknown to nvidia-smi" % (d["ordinal"], bus))
            bad += 1
            continue
        name, mib, reserved = smi[bus]
        ours = d["memory_bytes"] >> 20
        ok = name == d["name"] and mib - reserved == ours
        bad += not ok
        print("%s cuda:%d bus %s: name %r / %r, memory %d / %d - %d reserved MiB, node %d, cpus %s" %
              ("PASS" if ok else "FAIL", d["ordinal"], bus, d["name"], name,
               ours, mib, reserved, d["numa_node"], d["cpus"]))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
