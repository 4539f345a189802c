-- pubquiz-engine schema v2 (SQLite). Same logical schema as postgres/0002_generation_cache.sql.
-- The question generator's cache when no Redis is configured (pubquiz_engine.generate.cache):
-- one opaque text value per key, with an absolute expiry. Reads ignore expired rows; each put
-- deletes the expired ones, so the table stays as small as the live entries.

CREATE TABLE generation_cache (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
);
CREATE INDEX generation_cache_by_expiry ON generation_cache (expires_at);
