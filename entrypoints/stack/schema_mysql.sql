-- The OTT platform's source schema on a MySQL-compatible server (MySQL 8, MariaDB 10.6+).
-- Idempotent. The same tables, columns and keys as schema.sql, in types both engines speak:
-- BIGINT, INT, VARCHAR/TEXT (utf8mb4), DATE, DATETIME(6) holding UTC.
-- No ON DELETE CASCADE: InnoDB's cascaded changes are not written to the binlog, so neither
-- AWS DMS nor the local DMS would see them (docs/mysql.md); deleting a user or a movie deletes
-- its ratings first, in the same transaction (producers/activity_events.py).
CREATE TABLE IF NOT EXISTS users (
    user_id     BIGINT PRIMARY KEY,
    age         INT,
    gender      TEXT,
    occupation  TEXT,
    zip         TEXT
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS movies (
    movie_id     BIGINT PRIMARY KEY,
    title        TEXT NOT NULL,
    release_date DATE,
    genres       VARCHAR(400) NOT NULL DEFAULT ''   -- pipe-separated, e.g. 'Animation|Comedy'
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS ratings (
    user_id   BIGINT NOT NULL,
    movie_id  BIGINT NOT NULL,
    rating    SMALLINT NOT NULL CHECK (rating BETWEEN 1 AND 5),
    rated_at  DATETIME(6) NOT NULL,                 -- UTC
    PRIMARY KEY (user_id, movie_id),
    KEY ratings_movie_id (movie_id),
    CONSTRAINT ratings_user FOREIGN KEY (user_id) REFERENCES users (user_id),
    CONSTRAINT ratings_movie FOREIGN KEY (movie_id) REFERENCES movies (movie_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
