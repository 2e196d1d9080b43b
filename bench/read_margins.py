"""The write-to-read margin of every mapping the suite checks (`mars.sw.golden.cycles.
read_margins`): cycles from a phase's last word offer to the next phase's first gather
take, in the first inference and with resident weights.  The units' read copies of the
activation memory need at least READ_MARGIN (docs/banking.md).

    python bench/read_margins.py
"""

import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_mapper import CASES, mapped  # noqa: E402  (the suite's networks and presets)

from mars.sw.golden.cycles import READ_MARGIN, network_cycles, read_margins  # noqa: E402


def main() -> None:
    smallest = Counter()
    for config, name in CASES:
        mapping, _ = mapped(config, name)
        margins = [m for skip in (False, True)
                   for m in read_margins(network_cycles(mapping, skip_loads=skip))]
        low = min(margins, default=None)
        smallest[low] += 1
        print(f"{config.name:16s} {name:12s} smallest margin {low}")
    print(f"needed: {READ_MARGIN}; smallest margin over {len(CASES)} mappings: "
          f"{min(k for k in smallest if k is not None)} "
          f"(mappings per smallest margin: {dict(sorted(smallest.items()))})")


if __name__ == "__main__":
    main()
