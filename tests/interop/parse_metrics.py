#!/usr/bin/env python3
"""Parses an OpenMetrics exposition (stdin) with prometheus_client's reference parser.

Prints one line per sample, `name{label="value",...} value`, with labels sorted, so the
caller compares what the reference parser read rather than the text it was given.
Exits non-zero (with the parser's message) on anything the parser refuses.
"""
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def main() -> int:
    text = sys.stdin.read()
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                print(f"{sample.name}{{{labels}}} {sample.value}")
    except Exception as e:  # the parser raises ValueError and others on bad input
        print(f"not valid OpenMetrics: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
