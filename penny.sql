-- Penny's schema and its demo books, for SQLite and PostgreSQL alike.
--
-- Load it by hand to start over, as the lecture did:
--     psql "$DATABASE_URL" -f penny.sql
--     sqlite3 penny.sqlite < penny.sql
-- It drops the books table and the record of schema migrations, so it gives the database as
-- the latest migration leaves it. `penny init-db` runs it on a database that has no books
-- table yet, and otherwise only brings the schema up to date, never deleting a book.
--
-- author_key is the author folded for search (case and accents taken out; see src/fold.rs).
-- Penny fills it in: a book added by hand without it is found after the next `penny init-db`.

DROP TABLE IF EXISTS books;
DROP TABLE IF EXISTS refinery_schema_history;

CREATE TABLE books (
    isbn TEXT PRIMARY KEY,
    author TEXT,
    title TEXT,
    author_key TEXT
);

-- The search reads this index in order: a page is one range scan, with no sort. (On
-- PostgreSQL, `penny init-db` replaces it with one that compares bytes, as SQLite does.)
CREATE INDEX books_search ON books (author_key, author, title, isbn);

INSERT INTO books (isbn, author, title, author_key) VALUES
    ('123', 'Kernighan', 'The Practice of Programming', 'kernighan'),
    ('234', 'Kernighan', 'The C Programming Language', 'kernighan'),
    ('345', 'Sedgewick', 'Algorithms in C', 'sedgewick'),
    ('456', 'Gödel', 'On Formally Undecidable Propositions', 'godel'),
    ('567', 'García Márquez', 'Cien años de soledad', 'garcia marquez'),
    ('678', 'Émile Zola', 'Germinal', 'emile zola'),
    ('789', 'Ørsted', 'Selected Scientific Works', 'orsted'),
    ('890', 'Čapek', 'R.U.R.', 'capek'),
    ('901', 'Brontë', 'Jane Eyre', 'bronte'),
    ('912', 'Lem', 'Solaris', 'lem'),
    ('923', 'Достоевский', 'Преступление и наказание', 'достоевскии');
