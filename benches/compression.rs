//! What compressing Penny's pages as they are served would cost, against what rendering them
//! costs: a full results page (50 synthetic books, as among a million) and the demo's two
//! Kernighan books, each rendered by `penny::views`, then gzip- and brotli-compressed at the
//! levels a server would use per request. The static files are compressed once, at build time
//! (see build.rs); this is why the pages are not.
//!
//!     cargo bench --bench compression
//!
//! Prints, per page and coding, the bytes sent and the microseconds per page on one core.

use penny::db::{Book, Count, PAGE_SIZE};
use penny::views::{self, PageLinks, Results};
use std::io::Write;
use std::time::{Duration, Instant};

/// How long each figure is measured for.
const RUN: Duration = Duration::from_millis(500);

fn main() {
    let full: Vec<Book> = (0..PAGE_SIZE as u64)
        .map(penny::db::synthetic::book)
        .collect();
    let two = vec![
        book("123", "Kernighan", "The Practice of Programming"),
        book("234", "Kernighan", "The C Programming Language"),
    ];
    println!("| page | coding | bytes | µs per page |");
    println!("| --- | --- | ---: | ---: |");
    for (label, author, books, total) in [
        ("50 books", "Tur", &full, Count::MoreThan(1000)),
        ("2 books", "Ker", &two, Count::Exact(2)),
    ] {
        let links = PageLinks {
            previous: None,
            next: (books.len() == PAGE_SIZE)
                .then(|| "/searchresults?author=Tur&after=%7B%7D&page=2".to_owned()),
        };
        let results = Results {
            author,
            books,
            first: 1,
            total,
            past_the_end: false,
            links: &links,
        };
        let render = || {
            views::search_results(&results, "Saturday, 5 December 2026, 12:00 UTC").into_string()
        };
        let page = render();
        report(
            label,
            "none (render only)",
            page.len(),
            time(|| render().len()),
        );
        for level in [1, 6] {
            let size = gzip(&page, level).len();
            let took = time(|| gzip(&page, level).len());
            report(label, &format!("gzip {level}"), size, took);
        }
        for quality in [1, 4] {
            let size = brotli(&page, quality).len();
            let took = time(|| brotli(&page, quality).len());
            report(label, &format!("brotli {quality}"), size, took);
        }
    }
}

fn book(isbn: &str, author: &str, title: &str) -> Book {
    Book::new(isbn, author, title)
}

fn gzip(page: &str, level: u32) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    encoder.write_all(page.as_bytes()).expect("in memory");
    encoder.finish().expect("in memory")
}

fn brotli(page: &str, quality: i32) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut page.as_bytes(), &mut out, &params).expect("in memory");
    out
}

/// The mean time of `work` over `RUN`.
fn time(mut work: impl FnMut() -> usize) -> Duration {
    let started = Instant::now();
    let mut runs = 0u32;
    let mut sink = 0;
    while started.elapsed() < RUN {
        sink += std::hint::black_box(work());
        runs += 1;
    }
    std::hint::black_box(sink);
    started.elapsed() / runs
}

fn report(page: &str, coding: &str, bytes: usize, took: Duration) {
    println!(
        "| {page} | {coding} | {bytes} | {:.1} |",
        took.as_secs_f64() * 1e6
    );
}
