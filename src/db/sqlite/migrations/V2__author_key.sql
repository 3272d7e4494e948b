-- The search key, the author folded for search (src/fold.rs). `penny init-db` fills it in
-- right after this, for every book. The index the search reads replaces the one searches used
-- before, on lower(author).
ALTER TABLE books ADD COLUMN author_key TEXT;
DROP INDEX IF EXISTS books_author_search;
CREATE INDEX IF NOT EXISTS books_search ON books (author_key, author, title, isbn);
