//! SQLite and PostgreSQL find and order the same books, byte for byte, for any author and any
//! search: random Unicode names (combining sequences, composed and decomposed forms of one
//! name, mixed scripts, wildcards, odd spaces) against a model of the search built from
//! `penny::fold::fold` alone.

#[macro_use]
mod common;

use common::{Backend, TestDb};
use penny::db::{Book, Db, Position};
use penny::fold::fold;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Pieces names are made of: ordinary letters, and everything the fold has a rule for.
const PIECES: &[&str] = &[
    "a",
    "A",
    "e",
    "E",
    "é",
    "É",
    "e\u{301}",
    "E\u{301}",
    "ö",
    "o\u{308}",
    "Ö",
    "ø",
    "Ø",
    "ß",
    "ss",
    "SS",
    "ẞ",
    "i",
    "I",
    "İ",
    "ı",
    "ﬁ",
    "fi",
    "д",
    "Д",
    "й",
    "и\u{306}",
    "ё",
    "Ω",
    "ω",
    "Ώ",
    "ώ",
    "ς",
    "σ",
    "Σ",
    "한",
    "ᄒ",
    "か",
    "が",
    "ที่",
    "%",
    "_",
    "\\",
    " ",
    "  ",
    "\u{A0}",
    "-",
    "‐",
    "'",
    "’",
    "ǅ",
    "Ａ",
    "\u{AD}",
    "\u{200B}",
    "\u{301}",
    "Ł",
    "æ",
];

/// Text someone could type: no control characters, no noncharacters (Penny refuses both).
fn typeable(c: &char) -> bool {
    !c.is_control() && !('\u{FDD0}'..='\u{FDEF}').contains(c) && (*c as u32) & 0xFFFE != 0xFFFE
}

fn name() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(PIECES).prop_map(str::to_owned),
        1 => any::<char>().prop_filter("typeable", typeable).prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..7).prop_map(|pieces| pieces.concat())
}

/// How a search is typed: part of a name, spelled another way, or anything.
#[derive(Clone, Debug)]
enum Search {
    StartOf {
        name: usize,
        chars: usize,
        spelling: u8,
    },
    Anything(String),
}

fn searches() -> impl Strategy<Value = Vec<Search>> {
    let search = prop_oneof![
        3 => (any::<usize>(), 0..8usize, 0..5u8)
            .prop_map(|(name, chars, spelling)| Search::StartOf { name, chars, spelling }),
        1 => name().prop_map(Search::Anything),
    ];
    prop::collection::vec(search, 1..5)
}

fn spell(text: &str, spelling: u8) -> String {
    match spelling {
        0 => text.to_uppercase(),
        1 => text.to_lowercase(),
        2 => icu_normalizer::ComposingNormalizerBorrowed::new_nfc()
            .normalize(text)
            .into_owned(),
        3 => icu_normalizer::DecomposingNormalizerBorrowed::new_nfd()
            .normalize(text)
            .into_owned(),
        _ => text.to_owned(),
    }
}

/// Every book of a search, page after page, as `db` lists them.
async fn every_page(db: &Db, prefix: &str) -> Vec<Book> {
    let mut books = Vec::new();
    let mut position = Position::First;
    loop {
        let page = db.search_books(prefix, &position).await.expect("a search");
        books.extend(page.books);
        match page.next {
            Some(last) => position = Position::After(last),
            None => return books,
        }
    }
}

/// The search as defined: books whose author's fold starts with the prefix's fold, ordered by
/// that fold, then the author, title and ISBN, all by their bytes.
fn model(books: &[Book], prefix: &str) -> Vec<Book> {
    let key = fold(prefix);
    let mut found: Vec<Book> = books
        .iter()
        .filter(|book| fold(book.author()).starts_with(&key))
        .cloned()
        .collect();
    found.sort_by_cached_key(|book| {
        (
            fold(book.author()),
            book.author().to_owned(),
            book.title().to_owned(),
            book.isbn().to_owned(),
        )
    });
    found
}

#[cfg_attr(
    not(penny_postgres),
    ignore = "needs PostgreSQL: apt-get install postgresql, brew install postgresql@15, or set PENNY_TEST_PG_BINDIR or PENNY_TEST_DATABASE_URL"
)]
#[test]
fn sqlite_and_postgres_find_the_same_books_for_any_author_and_search() {
    if !common::postgres::available() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (sqlite, postgres) = runtime.block_on(async {
        let sqlite = TestDb::create(Backend::SqliteFile).await;
        let postgres = TestDb::create(Backend::Postgres).await;
        (sqlite, postgres)
    });
    let mut runner = TestRunner::new(Config {
        cases: 96,
        ..Config::default()
    });
    let case = std::cell::Cell::new(0);
    let strategy = (prop::collection::vec(name(), 1..70), searches());
    runner
        .run(&strategy, |(names, searches)| {
            // Each case's books and searches start with a tag of its own, so no case finds
            // another's books; the fold leaves the ASCII tag as it is.
            case.set(case.get() + 1);
            let tag = format!("case{:04}|", case.get());
            let books: Vec<Book> = names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    Book::new(
                        &format!("{tag}{i:03}"),
                        &format!("{tag}{name}"),
                        ["", "A", "b", "Z z"][i % 4],
                    )
                })
                .collect();
            let mut prefixes = vec![tag.clone()];
            for search in &searches {
                prefixes.push(match search {
                    Search::StartOf {
                        name,
                        chars,
                        spelling,
                    } => {
                        let name = &names[name % names.len()];
                        let start: String = name.chars().take(*chars).collect();
                        format!("{tag}{}", spell(&start, *spelling))
                    }
                    Search::Anything(text) => format!("{tag}{text}"),
                });
            }
            runtime.block_on(async {
                for db in [&sqlite.db, &postgres.db] {
                    db.add_books(books.clone()).await.expect("adding books");
                }
                for prefix in &prefixes {
                    let expected = model(&books, prefix);
                    let on_sqlite = every_page(&sqlite.db, prefix).await;
                    let on_postgres = every_page(&postgres.db, prefix).await;
                    prop_assert_eq!(&on_sqlite, &expected, "SQLite, searching {:?}", prefix);
                    prop_assert_eq!(
                        &on_postgres,
                        &expected,
                        "PostgreSQL, searching {:?}",
                        prefix
                    );
                }
                Ok(())
            })
        })
        .unwrap();
}
