-- The search key, the author folded for search (src/fold.rs). `penny init-db` fills it in
-- right after this, for every book, and makes the index the search reads (books_search_c,
-- which penny.sql cannot make: it compares bytes, with PostgreSQL's COLLATE "C"). The index
-- searches used before, on lower(author), goes.
ALTER TABLE books ADD COLUMN IF NOT EXISTS author_key text;
DROP INDEX IF EXISTS books_author_search;
