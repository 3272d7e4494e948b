-- The books table as the lecture made it, and as `penny init-db` made it before Penny had
-- migrations. A database from then already has it, so this changes nothing there.
CREATE TABLE IF NOT EXISTS books (isbn TEXT PRIMARY KEY, author TEXT, title TEXT);
