-- The OTT platform's source schema (MovieLens-shaped). Idempotent.
-- Replica identity DEFAULT (the primary key): updates and deletes carry the old key, the
-- same before-image PostgreSQL gives AWS DMS.
CREATE TABLE IF NOT EXISTS users (
    user_id     BIGINT PRIMARY KEY,
    age         INTEGER,
    gender      TEXT,
    occupation  TEXT,
    zip         TEXT
);
CREATE TABLE IF NOT EXISTS movies (
    movie_id     BIGINT PRIMARY KEY,
    title        TEXT NOT NULL,
    release_date DATE,
    genres       TEXT NOT NULL DEFAULT ''   -- pipe-separated, e.g. 'Animation|Comedy'
);
CREATE TABLE IF NOT EXISTS ratings (
    user_id   BIGINT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    movie_id  BIGINT NOT NULL REFERENCES movies (movie_id) ON DELETE CASCADE,
    rating    SMALLINT NOT NULL CHECK (rating BETWEEN 1 AND 5),
    rated_at  TIMESTAMP NOT NULL,           -- UTC
    PRIMARY KEY (user_id, movie_id)
);
CREATE INDEX IF NOT EXISTS ratings_movie_id ON ratings (movie_id);
ALTER TABLE users REPLICA IDENTITY DEFAULT;
ALTER TABLE movies REPLICA IDENTITY DEFAULT;
ALTER TABLE ratings REPLICA IDENTITY DEFAULT;
