#!/usr/bin/env python3
"""Splink (5.x, DuckDB) on a names-and-birth-date file from
`generate_people.py --shape names-dob`, for the side-by-side timing and F1 in
docs/quality.md. Term-frequency adjustments on both names, as Splink's examples do; no
labels in training; clusters at the threshold scored over all pairs like `idgraph eval`.

    pip install splink==5.0.0
    python3 benches/quality/splink_names_dob.py names_dob.csv [--threshold 0.9]
"""

import argparse
import json
import time
from collections import Counter

import splink.comparison_library as cl
from splink import Linker, SettingsCreator, block_on
from splink.backends.duckdb import DuckDBAPI


def pairs(labels):
    return sum(c * (c - 1) // 2 for c in Counter(labels).values())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--threshold", type=float, default=0.9)
    args = ap.parse_args()
    started = time.time()
    import pandas as pd

    df = pd.read_csv(args.file, dtype=str).rename(columns={"rec_id": "unique_id"})
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("last_name").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("dob", input_is_string=True),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("first_name", "last_name"),
            block_on("last_name", "dob"),
            block_on("first_name", "dob"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    db = DuckDBAPI()
    linker = Linker(db.register(df), settings)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("first_name", "last_name", "dob")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("first_name", "last_name")
    )
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    predictions = linker.inference.predict(threshold_match_probability=args.threshold)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, args.threshold
    ).as_pandas_dataframe()
    wall = time.time() - started
    merged = clusters[["unique_id", "cluster_id"]].merge(
        df[["unique_id", "entity_id"]], on="unique_id"
    )
    both = list(zip(merged["cluster_id"], merged["entity_id"]))
    tp = pairs(both)
    predicted, actual = pairs(merged["cluster_id"]), pairs(merged["entity_id"])
    p = tp / predicted if predicted else 1.0
    r = tp / actual if actual else 1.0
    print(json.dumps({"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
                      "wall_seconds_after_imports": wall}))


if __name__ == "__main__":
    main()
