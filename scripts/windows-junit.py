#!/usr/bin/env python3
"""Counts scripts/windows-check's results from nextest's JUnit report.

A test that stopped with kefu_tests::EXTERNAL_SKIP in its output could not
run against an external server (it needs the in-process state): skipped,
with its reason. A test that passed but printed "SKIPPED:" (a suite that
checks what the machine allows, e.g. network namespaces) is skipped too.
Everything else is passed or failed as nextest says.

Exits 0 when no test failed (the skip markers are not failures, though
nextest counts the ones that stop a test as failed), 1 when one did or
when the report holds no test at all.
"""
import collections
import sys
import xml.etree.ElementTree as ET

MARK = "kefu-tests: skipped with an external server:"

root = ET.parse(sys.argv[1]).getroot()
passed, failed, skipped = [], [], collections.Counter()
for case in root.iter("testcase"):
    name = case.get("name")
    text = "".join(
        (node.text or "") + (node.get("message") or "")
        for node in case.iter()
        if node.tag in ("system-out", "system-err", "failure", "error",
                        "rerunFailure", "flakyFailure")
    )
    bad = case.find("failure") is not None or case.find("error") is not None
    if MARK in text:
        reason = text.split(MARK, 1)[1].splitlines()[0].strip()
        skipped[reason] += 1
    elif not bad and "SKIPPED:" in text:
        reason = text.split("SKIPPED:", 1)[1].splitlines()[0].strip()
        skipped[reason] += 1
    elif bad:
        failed.append(name)
    else:
        passed.append(name)

print(f"kefu-server.exe under Wine: {len(passed)} passed, {len(failed)} failed, "
      f"{sum(skipped.values())} skipped")
for reason, count in skipped.most_common():
    print(f"  skipped {count}: {reason}")
for name in failed:
    print(f"  FAILED {name}")
sys.exit(1 if failed or not (passed or skipped) else 0)
