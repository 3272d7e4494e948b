-- The index behind SQLite's author search: a range scan on lower(author) that also returns the
-- rows in the order the pages show them, without touching the table.
CREATE INDEX IF NOT EXISTS books_author_search ON books (lower(author), author, title, isbn);
