-- Penny's schema and its three books, for SQLite and PostgreSQL alike.
--
-- Load it by hand (psql "$DATABASE_URL" -f penny.sql, or sqlite3 penny.sqlite < penny.sql) to
-- start over, as the lecture did. `penny init-db` runs it without the DROP statements, so that it
-- only creates what is missing; `penny init-db --reset` runs it as written.

DROP TABLE IF EXISTS books;

CREATE TABLE IF NOT EXISTS books (
    isbn TEXT PRIMARY KEY,
    author TEXT,
    title TEXT
);

INSERT INTO books (isbn, author, title) VALUES ('123', 'Kernighan', 'The Practice of Programming')
    ON CONFLICT DO NOTHING;
INSERT INTO books (isbn, author, title) VALUES ('234', 'Kernighan', 'The C Programming Language')
    ON CONFLICT DO NOTHING;
INSERT INTO books (isbn, author, title) VALUES ('345', 'Sedgewick', 'Algorithms in C')
    ON CONFLICT DO NOTHING;
