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
    args = ap.parse_args()
    if args.records < 1:
        sys.exit("--records must be at least 1")
    rng = random.Random(args.seed)
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
    rng.shuffle(rows)
    out = sys.stdout if args.out == "-" else open(args.out, "w", newline="")
    w = csv.DictWriter(out, fieldnames=list(rows[0].keys()))
    w.writeheader()
    w.writerows(rows)
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main()
