-- A coordinator database as version 1 of its schema wrote it (before the round lifecycle was typed),
-- with one finished round and one waiting for an attribute. tests/coordinator/test_store.py opens it.
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS rounds (
    round_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    project TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    entities INTEGER NOT NULL DEFAULT 0,
    linked_entities INTEGER NOT NULL DEFAULT 0,
    report TEXT NOT NULL DEFAULT '',
    clks_deleted TEXT,
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    round_id TEXT NOT NULL REFERENCES rounds(round_id),
    partner TEXT NOT NULL,
    upload TEXT NOT NULL,
    total_chunks INTEGER NOT NULL,
    total_records INTEGER NOT NULL,
    complete INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (round_id, partner, upload)
);
CREATE TABLE IF NOT EXISTS chunks (
    round_id TEXT NOT NULL,
    partner TEXT NOT NULL,
    upload TEXT NOT NULL,
    chunk_index INTEGER NOT NULL,
    first_ref INTEGER NOT NULL,
    records INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    data BLOB NOT NULL,
    -- keyed tokens of exact identifiers that came with a CLK chunk (JSON: field -> hex or null)
    tokens BLOB,
    PRIMARY KEY (round_id, partner, upload, chunk_index)
);
CREATE TABLE IF NOT EXISTS entities (
    entity_id TEXT PRIMARY KEY,
    first_round TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    round_id TEXT NOT NULL,
    partner TEXT NOT NULL,
    ref INTEGER NOT NULL,
    entity_id TEXT NOT NULL REFERENCES entities(entity_id),
    score REAL,
    PRIMARY KEY (round_id, partner, ref)
);
CREATE TABLE IF NOT EXISTS deliveries (
    round_id TEXT NOT NULL,
    partner TEXT NOT NULL,
    what TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (round_id, partner, what)
);
CREATE TABLE IF NOT EXISTS products (
    round_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    name TEXT NOT NULL,
    media_type TEXT NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (round_id, product_id, name)
);
INSERT INTO rounds (round_id, seq, project, state, created, updated) VALUES
  ('r1', 1, 'sha256:0000000000000000000000000000000000000000000000000000000000000000', 'closed', '2026-01-01T00:00:00Z', '2026-01-01T00:10:00Z'),
  ('r2', 2, 'sha256:0000000000000000000000000000000000000000000000000000000000000000', 'waiting_attributes', '2026-02-01T00:00:00Z', '2026-02-01T00:05:00Z');
INSERT INTO deliveries (round_id, partner, what, done, error) VALUES
  ('r1', 'council', 'closed', 1, ''),
  ('r2', 'council', 'encode_and_upload', 1, ''),
  ('r2', 'council', 'entities', 0, ''),
  ('r2', 'council', 'attribute:known_by_ward:ward', 0, 'InputDataError on the node; see the node''s log'),
  ('r2', 'police', 'product:known_by_ward', 0, '');
