#!/usr/bin/env python3
"""Generates a labelled CSV of people with realistic noise, for `idgraph eval` at scale
(scripts/bench-matching.sh). Standard library only; deterministic for a seed.

Each person (entity) has 1 to 4 records (mean 1.6). Names are drawn with Zipf-like
frequencies from pools of synthetic names (3,000 first names, 40,000 last names), so common
names make large blocks as in real data. Duplicates carry the noise data entry produces:
typos (substitution, deletion, insertion, transposition), initials, missing fields, swapped
day and month, off-by-one birth years, moves to a new address, postcode typos, email typos.
30% of records carry the person's CRM customer id and 45% an email (identifiers); the rest
have only name, birth date and address. Columns: rec_id, entity_id, customer_id, first_name,
last_name, dob, street, city, postcode, email.

`--shape names-dob` generates the harder case of record-only data: first name, last name and
birth date, nothing else (columns rec_id, entity_id, first_name, last_name, dob), with a few
very common surnames (the most common is about 7% of the records) and birth-date typos
(a wrong digit, a year ten off, day and month swapped, a year off by one).
"""

import argparse
import bisect
import csv
import random
import sys

SYLLABLES = [
    "an", "ber", "cal", "dan", "el", "fer", "gar", "hal", "in", "jo", "kar", "lin", "mar",
    "nor", "ol", "per", "quin", "ros", "sal", "tor", "ul", "van", "wil", "xan", "yor", "zel",
    "bri", "cha", "dre", "fio", "gus", "hen", "ivo", "kle", "lou", "mei", "nad", "ori", "pia",
    "ste",
]
STREET_TYPES = ["St", "Ave", "Rd", "Ln", "Dr", "Way", "Pl", "Ct"]
DOMAINS = ["example.com", "mail.test", "inbox.test", "post.test", "web.test"]


def word(rng, parts):
    return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


def pool(rng, size, parts):
    names = set()
    while len(names) < size:
        names.add(word(rng, rng.choice(parts)))
    return sorted(names)


class Zipf:
    """Draws items with weight 1 / rank^s."""

    def __init__(self, items, s, rng):
        self.items = items
        self.rng = rng
        total, self.cum = 0.0, []
        for rank in range(1, len(items) + 1):
            total += 1.0 / rank**s
            self.cum.append(total)

    def draw(self):
        x = self.rng.random() * self.cum[-1]
        return self.items[bisect.bisect_left(self.cum, x)]


def typo(rng, s):
    if len(s) < 3:
        return s
    i = rng.randrange(1, len(s))
    op = rng.randrange(4)
    letter = rng.choice("abcdefghijklmnopqrstuvwxyz")
    if op == 0:
        return s[:i] + letter + s[i + 1 :]
    if op == 1:
        return s[:i] + s[i + 1 :]
    if op == 2:
        return s[:i] + letter + s[i:]
    if i < len(s) - 1:
        return s[:i] + s[i + 1] + s[i] + s[i + 2 :]
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="-")
    ap.add_argument("--shape", choices=["full", "names-dob"], default="full")
    args = ap.parse_args()
    if args.records < 1:
        sys.exit("--records must be at least 1")
    rng = random.Random(args.seed)
    if args.shape == "names-dob":
        return names_dob(args, rng)
    firsts = Zipf(pool(rng, 3_000, [1, 2, 2, 3]), 1.0, rng)
    lasts = Zipf(pool(rng, 40_000, [2, 3, 3]), 0.9, rng)
    streets = pool(rng, 5_000, [2, 3])
    cities = []
    for c in pool(rng, 800, [2, 3]):
        cities.append((c, [f"{rng.randrange(10000, 99999)}" for _ in range(rng.randint(1, 4))]))
    city_pick = Zipf(cities, 0.8, rng)

    def address():
        city, codes = city_pick.draw()
        street = f"{rng.randint(1, 9999)} {rng.choice(streets)} {rng.choice(STREET_TYPES)}"
        return street, city, rng.choice(codes)

    rows = []
    entity = 0
    while len(rows) < args.records:
        entity += 1
        first, last = firsts.draw(), lasts.draw()
        dob = (rng.randint(1930, 2005), rng.randint(1, 12), rng.randint(1, 28))
        street, city, pc = address()
        email = f"{first}.{last}{rng.randint(1, 999)}@{rng.choice(DOMAINS)}".lower()
        customer = f"C{entity:08d}"
        copies = rng.choices([1, 2, 3, 4], weights=[60, 25, 10, 5])[0]
        for copy in range(copies):
            f, l, (y, m, d) = first, last, dob
            s, c, p, e = street, city, pc, email
            if copy > 0:
                if rng.random() < 0.15:
                    f = typo(rng, f)
                if rng.random() < 0.10:
                    l = typo(rng, l)
                if rng.random() < 0.03:
                    f = f[0]
                if rng.random() < 0.02 and d <= 12:
                    m, d = d, m
                if rng.random() < 0.02:
                    y += rng.choice([-1, 1])
                if rng.random() < 0.10:
                    s, c, p = address()
                if rng.random() < 0.03:
                    p = typo(rng, p)
                if rng.random() < 0.05:
                    e = typo(rng, e.split("@")[0]) + "@" + e.split("@")[1]
            row = {
                "rec_id": f"r{len(rows) + 1}",
                "entity_id": f"e{entity}",
                "customer_id": customer if rng.random() < 0.30 else "",
                "first_name": f,
                "last_name": "" if rng.random() < 0.02 else l,
                "dob": "" if rng.random() < 0.05 else f"{y:04d}-{m:02d}-{d:02d}",
                "street": "" if rng.random() < 0.10 else s,
                "city": c,
                "postcode": p,
                "email": e if rng.random() < 0.45 else "",
            }
            rows.append(row)
            if len(rows) == args.records:
                break
    write_rows(args, rng, rows)


def write_rows(args, rng, rows):
    """Shuffles the rows and writes them as CSV to `--out`."""
    rng.shuffle(rows)
    out = sys.stdout if args.out == "-" else open(args.out, "w", newline="")
    w = csv.DictWriter(out, fieldnames=list(rows[0].keys()))
    w.writeheader()
    w.writerows(rows)
    if out is not sys.stdout:
        out.close()


def digit_typo(rng, dob):
    """A data-entry error in a YYYY-MM-DD date that still parses."""
    y, m, d = dob
    for _ in range(20):
        kind = rng.randrange(4)
        if kind == 0:
            # One wrong digit of the year's last two (1967 -> 1957, 1967 -> 1961).
            digits = list(f"{y:04d}")
            i = rng.choice([2, 3])
            digits[i] = rng.choice([c for c in "0123456789" if c != digits[i]])
            cand = (int("".join(digits)), m, d)
        elif kind == 1:
            cand = (y, m, d)
            digits = list(f"{d:02d}")
            i = rng.choice([0, 1])
            digits[i] = rng.choice([c for c in "012" if c != digits[i]])
            cand = (y, m, int("".join(digits)))
        elif kind == 2:
            cand = (y + rng.choice([-10, 10]), m, d)
        else:
            cand = (y, d, m)
        if 1900 <= cand[0] <= 2010 and 1 <= cand[1] <= 12 and 1 <= cand[2] <= 28 and cand != dob:
            return cand
    return (y + 1, m, d)


def names_dob(args, rng):
    firsts = Zipf(pool(rng, 1_000, [1, 2, 2]), 1.05, rng)
    lasts = Zipf(pool(rng, 5_000, [2, 3, 3]), 0.95, rng)
    rows = []
    entity = 0
    while len(rows) < args.records:
        entity += 1
        first, last = firsts.draw(), lasts.draw()
        dob = (rng.randint(1950, 1990), rng.randint(1, 12), rng.randint(1, 28))
        copies = rng.choices([1, 2, 3], weights=[55, 35, 10])[0]
        for copy in range(copies):
            f, l, (y, m, d) = first, last, dob
            if copy > 0:
                if rng.random() < 0.12:
                    f = typo(rng, f)
                if rng.random() < 0.08:
                    l = typo(rng, l)
                if rng.random() < 0.10:
                    y, m, d = digit_typo(rng, dob)
                elif rng.random() < 0.03:
                    y += rng.choice([-1, 1])
            rows.append({
                "rec_id": f"r{len(rows) + 1}",
                "entity_id": f"e{entity}",
                "first_name": f,
                "last_name": l,
                "dob": f"{y:04d}-{m:02d}-{d:02d}",
            })
            if len(rows) == args.records:
                break
    write_rows(args, rng, rows)


if __name__ == "__main__":
    main()
