"""Splink 4 on plaintext tables: the ceiling of ``quality.py``. Runs under ``.venv-splink``.

    .venv-splink/bin/python benchmarks/_quality_splink.py SPEC.json

``SPEC.json`` names the tables (each a CSV with ``record_id`` and the fields, already cleaned by
``quality.py``: lower case text, ISO dates, ``AB1 2CD`` postcodes, empty for missing), the
fields with their oda-fed types, the match probabilities to cluster at, and an output folder.
It writes ``clusters.csv`` (``threshold, source, record_id, cluster_id``) there and prints one
JSON line of timings and the trained model's summary.

The model is Splink's usual one, with no truth: a comparison template per field type (names by
Jaro-Winkler levels with term frequency adjustments, date of birth, postcode, address), u from
random sampling, m by EM in two sessions (blocked on date of birth, then on the names), link
only across every table, then connected components at each match probability.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import pandas as pd
import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on


def comparison(name: str, kind: str):
    """Splink's template for one field of the given oda-fed type."""
    if kind == "name":
        return cl.NameComparison(name).configure(term_frequency_adjustments=True)
    if kind == "date_of_birth":
        return cl.DateOfBirthComparison(name, input_is_string=True, datetime_format="%Y-%m-%d")
    if kind == "postcode":
        return cl.PostcodeComparison(name)
    if kind == "sex":
        return cl.ExactMatch(name)
    if kind == "address":
        return cl.JaroWinklerAtThresholds(name, [0.95, 0.88, 0.7])
    return cl.JaroWinklerAtThresholds(name, [0.92, 0.8]).configure(term_frequency_adjustments=True)


def location(address: str, postcode: str):
    """Address and postcode as one comparison: they change together when a person moves, and
    as two independent comparisons a household would weigh as one person twice over."""
    return cl.CustomComparison(
        output_column_name="location",
        comparison_levels=[
            cll.And(cll.NullLevel(address), cll.NullLevel(postcode)),
            cll.And(cll.ExactMatchLevel(address), cll.ExactMatchLevel(postcode)),
            cll.And(cll.JaroWinklerLevel(address, 0.9), cll.ExactMatchLevel(postcode)),
            cll.Or(cll.ExactMatchLevel(address), cll.ExactMatchLevel(postcode)),
            cll.JaroWinklerLevel(address, 0.9),
            cll.ElseLevel(),
        ],
    )


def comparisons(fields: dict[str, str]) -> list:
    """One template per field, but one location comparison for an address with a postcode."""
    addresses = [n for n, t in fields.items() if t == "address"]
    postcodes = [n for n, t in fields.items() if t == "postcode"]
    if len(addresses) == 1 and len(postcodes) == 1:
        rest = {n: t for n, t in fields.items() if n not in (addresses[0], postcodes[0])}
        return [comparison(n, t) for n, t in rest.items()] + [location(addresses[0], postcodes[0])]
    return [comparison(n, t) for n, t in fields.items()]


def main() -> None:
    logging.getLogger("splink").setLevel(logging.WARNING)
    spec = json.loads(Path(sys.argv[1]).read_text())
    out = Path(spec["out"])
    fields = {f["name"]: f["type"] for f in spec["fields"]}
    names = [n for n, t in fields.items() if t == "name"]
    dates = [n for n, t in fields.items() if t == "date_of_birth"]
    places = [n for n, t in fields.items() if t in ("postcode", "address", "free_text")]
    tables, aliases = [], []
    for table in spec["tables"]:
        frame = pd.read_csv(table["path"], dtype=str, keep_default_na=False)
        tables.append(frame.replace("", None))
        aliases.append(table["name"])

    # Predictions come from the union of these blocks: the names together, each key field on
    # its own, and each name with the year of birth.
    rules = [block_on(*names)] if len(names) > 1 else []
    rules += [block_on(n) for n in dates + places]
    rules += [block_on(n, f"substr({d}, 1, 4)") for n in names for d in dates]
    settings = SettingsCreator(
        link_type="link_only",
        unique_id_column_name="record_id",
        comparisons=comparisons(fields),
        blocking_rules_to_generate_predictions=rules,
        retain_intermediate_calculation_columns=False,
    )
    started = time.perf_counter()
    linker = Linker(tables, settings, db_api=DuckDBAPI(), input_table_aliases=aliases)
    exact = [block_on(*names, *dates)] + [block_on(p, *dates) for p in places]
    linker.training.estimate_probability_two_random_records_match(exact, recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e7, seed=1)
    for session in [block_on(*dates), block_on(*names)]:
        linker.training.estimate_parameters_using_expectation_maximisation(session)
    trained = time.perf_counter()
    predictions = linker.inference.predict(threshold_match_probability=min(spec["thresholds"]))
    predicted = time.perf_counter()
    frames, clustered = [], {}
    for threshold in spec["thresholds"]:
        begin = time.perf_counter()
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
            predictions, threshold_match_probability=threshold
        ).as_pandas_dataframe()
        clustered[str(threshold)] = time.perf_counter() - begin
        frames.append(
            pd.DataFrame(
                {
                    "threshold": threshold,
                    "source": clusters["source_dataset"],
                    "record_id": clusters["record_id"],
                    "cluster_id": clusters["cluster_id"],
                }
            )
        )
    pd.concat(frames).to_csv(out / "clusters.csv", index=False)
    print(
        json.dumps(
            {
                "train": trained - started,
                "predict": predicted - trained,
                "cluster": clustered,
                "pairs": len(predictions.as_pandas_dataframe()),
                "lambda": linker._settings_obj._probability_two_random_records_match,
            }
        )
    )


if __name__ == "__main__":
    main()
