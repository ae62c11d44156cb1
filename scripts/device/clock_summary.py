"""The SM clock, board power and temperature over the parts of a device call: nvidia-smi's samples (SMI_CSV, written
with `--query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu[,clocks_event_reasons.active] --format=csv,noheader
-lms 100`) grouped by the marks a script wrote as it went (MARKS: lines "YYYY/MM/DD HH:MM:SS.ns label", each part
running until the next mark), with each part's median and range, the median clock of its busy samples (at least half
its largest power: a part's process start-up and warm-up idle otherwise count), and the throttle reasons seen.
    python3 scripts/device/clock_summary.py SMI_CSV MARKS
"""
import statistics
import sys
from datetime import datetime


def stamp(text):
    day, time = text.strip().split()[:2]
    whole, _, frac = time.partition(".")
    return datetime.strptime(f"{day} {whole}", "%Y/%m/%d %H:%M:%S").timestamp() + float(f"0.{frac or 0}")


def number(text):
    return float(text.strip().split()[0])


def main():
    samples = []
    for line in open(sys.argv[1]):
        cells = line.split(",")
        try:
            samples.append((stamp(cells[0]), number(cells[1]), number(cells[2]), number(cells[3]),
                            cells[4].strip() if len(cells) > 4 else ""))
        except (ValueError, IndexError):
            continue
    marks = []
    for line in open(sys.argv[2]):
        parts = line.split(maxsplit=2)
        marks.append((stamp(" ".join(parts[:2])), parts[2].strip() if len(parts) > 2 else ""))
    print(f"{'part':28s} {'samples':>7s} {'SM MHz median (min-max)':>24s} {'busy: n, MHz':>13s} {'W median (max)':>15s} "
          f"{'C max':>6s}  reasons")
    for (start, label), (end, _) in zip(marks, marks[1:] + [(float("inf"), "")]):
        part = [s for s in samples if start <= s[0] < end]
        if not part:
            continue
        clocks, watts, temps = [s[1] for s in part], [s[2] for s in part], [s[3] for s in part]
        reasons = sorted({s[4] for s in part if s[4]})
        busy = [s[1] for s in part if s[2] >= 0.5 * max(watts)]
        print(f"{label:28s} {len(part):7d} {statistics.median(clocks):9.0f} ({min(clocks):.0f}-{max(clocks):.0f})"
              f"{'':>3s} {len(busy):4d} {statistics.median(busy):6.0f}  {statistics.median(watts):7.0f} ({max(watts):.0f})"
              f" {max(temps):6.0f}  {' '.join(reasons)}")


if __name__ == "__main__":
    main()
