//! The pages, as maud templates compiled into the binary. Each view is a pure function of plain
//! data; maud escapes every value, so text from visitors or the database is never markup.

use crate::assets;
use crate::db::{Book, Count};
use maud::{DOCTYPE, Markup, PreEscaped, Render, html};
use std::sync::LazyLock;

/// Morning before noon, afternoon from noon on, by the clock the pages show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Greeting {
    Morning,
    Afternoon,
}

impl Greeting {
    pub fn at_hour(hour: u32) -> Greeting {
        if hour < 12 {
            Greeting::Morning
        } else {
            Greeting::Afternoon
        }
    }

    fn word(self) -> &'static str {
        match self {
            Greeting::Morning => "morning",
            Greeting::Afternoon => "afternoon",
        }
    }
}

/// What the search box holds: the search as typed, and a message when it cannot be run (one of
/// Penny's own, never visitor text).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchBox<'a> {
    pub value: &'a str,
    pub error: Option<&'a str>,
}

/// Plain text with nothing to escape (a test checks), so written out as it is on every page.
const DESCRIPTION: PreEscaped<&str> = PreEscaped(
    "Find books by their author: type the start of a name, and Penny lists the books, \
     ignoring case and accents.",
);

/// The home page.
pub fn home(greeting: Greeting, prev_author: Option<&str>, now: &str) -> Markup {
    let body = html! {
        h1 { "Good " (greeting.word()) " and welcome to Penny.com" }
        p.lead { "Find the books you are looking for by their author." }
        (search_box(&SearchBox::default()))
        (previous_search(prev_author))
        p { a href="/searchform" { "Click here to begin." } }
    };
    layout("Penny.com", body, now, false)
}

/// The author search form, with a message when the search typed could not be run.
pub fn search_form(search: &SearchBox, prev_author: Option<&str>, now: &str) -> Markup {
    let body = html! {
        h1 { "Author Search" }
        (search_box(search))
        div #results {}
        (previous_search(prev_author))
    };
    layout("Author Search · Penny.com", body, now, true)
}

/// Where the pages around a page of results are, if there are any.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageLinks {
    pub previous: Option<String>,
    pub next: Option<String>,
}

/// One page of a search's results.
#[derive(Clone, Copy, Debug)]
pub struct Results<'a> {
    /// The search as typed.
    pub author: &'a str,
    pub books: &'a [Book],
    /// The place of the page's first book among all the results, from 1.
    pub first: u64,
    /// How many books the search finds in all.
    pub total: Count,
    /// No books, on a page after others (a link followed after books were deleted, say).
    pub past_the_end: bool,
    pub links: &'a PageLinks,
}

/// A page of the books by `author`.
pub fn search_results(results: &Results, now: &str) -> Markup {
    let body = html! {
        (Room(PAGE_ROOM))
        h1 { "Author Search Results" }
        (search_box(&SearchBox { value: results.author, error: None }))
        div #results { (results_section(results)) }
        p { a href="/searchform" { "Click here to do another author search." } }
    };
    layout("Author Search Results · Penny.com", body, now, true)
}

/// The results themselves: what the search as you type replaces.
fn results_section(results: &Results) -> Markup {
    let shown = results.books.len() as u64;
    let last = results.first + shown.saturating_sub(1);
    html! {
        p.summary aria-live="polite" {
            strong { "Books by " (results.author) ":" }
            " "
            @match results.total {
                Count::Exact(0) => { "none." }
                Count::Exact(total) if shown == total => { (Books(total)) "." }
                Count::Exact(total) => {
                    (Thousands(results.first)) "–" (Thousands(last)) " of " (Books(total)) "."
                }
                Count::MoreThan(total) => {
                    (Thousands(results.first)) "–" (Thousands(last)) " of more than "
                    (Books(total)) "."
                }
            }
        }
        @if results.past_the_end {
            div.empty {
                p { strong { "There are no more books by “" (results.author) "” here." } }
                p {
                    a href=(format!("/searchresults?author={}", encode(results.author))) {
                        "Back to the first page of the results."
                    }
                }
            }
        } @else if results.books.is_empty() {
            div.empty {
                p { strong { "No author’s name starts with “" (results.author) "”." } }
                p {
                    "Check the spelling, or type less: the start of a name is enough, and case \
                     and accents do not count."
                }
            }
        } @else {
            (pager(results.links, "Pages of results"))
            div.table-wrap tabindex="0" role="region" aria-label="Books" {
                table {
                    thead {
                        tr {
                            th.isbn scope="col" { "ISBN" }
                            th.author scope="col" { "Author" }
                            th.title scope="col" { "Title" }
                        }
                    }
                    tbody {
                        @for book in results.books {
                            tr {
                                td.isbn { (Text(book.isbn())) }
                                td.author { (Text(book.author())) }
                                td.title { (Text(book.title())) }
                            }
                        }
                    }
                }
            }
            (pager(results.links, "Pages of results, after the list"))
        }
    }
}

/// Previous and Next, as buttons; one that leads nowhere is shown, but disabled.
fn pager(links: &PageLinks, label: &str) -> Markup {
    html! {
        @if links.previous.is_some() || links.next.is_some() {
            nav.pages aria-label=(label) {
                @match &links.previous {
                    Some(href) => a.button.secondary rel="prev" href=(href) { "← Previous" },
                    None => span.button.secondary aria-disabled="true" { "← Previous" },
                }
                @match &links.next {
                    Some(href) => a.button.secondary rel="next" href=(href) { "Next →" },
                    None => span.button.secondary aria-disabled="true" { "Next →" },
                }
            }
        }
    }
}

fn search_box(search: &SearchBox) -> Markup {
    let described_by = if search.error.is_some() {
        "author-error author-hint"
    } else {
        "author-hint"
    };
    html! {
        form.search action="/searchresults" method="get" role="search" {
            label for="author" { "Author name" }
            div.field {
                input #author type="search" name="author" value=(search.value) maxlength="100"
                    autocomplete="off" spellcheck="false" aria-describedby=(described_by)
                    aria-invalid=[search.error.map(|_| "true")];
                button type="submit" { "Search" }
            }
            @if let Some(error) = search.error {
                p #author-error .notice role="alert" { (error) }
            }
            p #author-hint .hint {
                "The start of a name is enough, and case and accents do not count: \"ker\" \
                 finds Kernighan, \"godel\" Gödel."
            }
        }
    }
}

fn previous_search(prev_author: Option<&str>) -> Markup {
    html! {
        p.previous {
            "Previous author search: "
            @match prev_author {
                Some(author) => a href=(format!("/searchresults?author={}", encode(author))) { (author) },
                None => "none yet.",
            }
        }
    }
}

fn encode(text: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
}

/// "1 book", "16,698 books": written straight into the page, as `Thousands`.
struct Books(u64);

impl Render for Books {
    fn render_to(&self, page: &mut String) {
        match self.0 {
            1 => page.push_str("1 book"),
            n => {
                Thousands(n).render_to(page);
                page.push_str(" books");
            }
        }
    }
}

/// 16698 as "16,698": on the pages, written straight into the page (no string of its own),
/// and in `penny pooling`'s table.
#[derive(Clone, Copy, Debug)]
pub struct Thousands(pub u64);

impl std::fmt::Display for Thousands {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(self.0);
        // The first group has one to three digits; every other, three.
        let mut at = match digits.len() % 3 {
            0 => 3,
            short => short,
        };
        out.write_str(&digits[..at])?;
        while at < digits.len() {
            out.write_str(",")?;
            out.write_str(&digits[at..at + 3])?;
            at += 3;
        }
        Ok(())
    }
}

impl Render for Thousands {
    fn render_to(&self, page: &mut String) {
        use std::fmt::Write;
        let _ = write!(page, "{self}");
    }
}

/// A page for an error: `heading` and `message` are Penny's own words, never a cause. A
/// `request_id` is shown for the visitor to quote: the log's line for the request has it.
pub fn error_page(heading: &str, message: &str, now: &str, request_id: Option<&str>) -> Markup {
    let body = html! {
        h1 { (heading) }
        p { (message) }
        @if let Some(id) = request_id {
            p.request-id { "Request ID: " code { (id) } }
        }
        p { a href="/" { "Back to the home page." } }
    };
    layout(&format!("{heading} · Penny.com"), body, now, false)
}

/// Room made in a page's buffers (the whole page's and its body's) before anything is
/// written to them: maud starts each at the size of its template's source, and a page of
/// results outgrew that several times over, copying itself each time. A page of 50 books is
/// about 9 KiB.
const PAGE_ROOM: usize = 12 * 1024;

/// Makes room for this many more bytes in the page, and writes nothing.
struct Room(usize);

impl Render for Room {
    fn render_to(&self, page: &mut String) {
        page.reserve(self.0);
    }
}

/// Text from the database, escaped as maud escapes it (`&`, `<`, `>` and `"`), a run of plain
/// characters at a time: maud writes a byte at a time, and on a page of 50 books that was a
/// sixth of the work of serving it.
struct Text<'a>(&'a str);

impl Render for Text<'_> {
    fn render_to(&self, page: &mut String) {
        let text = self.0;
        // Most text has nothing to escape. This look at every byte, with no early exit,
        // compiles to a few vector instructions per 32 bytes.
        let special = |byte: u8| matches!(byte, b'&' | b'<' | b'>' | b'"');
        if !text
            .bytes()
            .fold(false, |found, byte| found | special(byte))
        {
            page.push_str(text);
            return;
        }
        let mut plain = 0;
        for (at, byte) in text.bytes().enumerate() {
            let entity = match byte {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => continue,
            };
            page.push_str(&text[plain..at]);
            page.push_str(entity);
            plain = at + 1;
        }
        page.push_str(&text[plain..]);
    }
}

/// The hashed URLs of the assets every page links, looked up once rather than on every page.
static STYLESHEET: LazyLock<&str> = LazyLock::new(|| assets::url("penny.css"));
static ICON: LazyLock<&str> = LazyLock::new(|| assets::url("favicon.svg"));
static SCRIPT: LazyLock<&str> = LazyLock::new(|| assets::url("search.js"));

/// `script`: whether the page searches as you type (it has a results region to update).
fn layout(title: &str, body: Markup, now: &str, script: bool) -> Markup {
    html! {
        (Room(PAGE_ROOM))
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                meta name="description" content=(DESCRIPTION);
                link rel="stylesheet" href=(*STYLESHEET);
                link rel="icon" href="/favicon.ico" sizes="32x32";
                link rel="icon" href=(*ICON) type="image/svg+xml";
                @if script {
                    script src=(*SCRIPT) defer {}
                }
            }
            body {
                header.site {
                    a.brand href="/" { "Penny.com" }
                }
                main { (body) }
                footer.site { p { "Today is " (now) "." } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(author: &str) -> Book {
        Book::new("1", author, "<b>Title</b>")
    }

    fn results<'a>(author: &'a str, books: &'a [Book], links: &'a PageLinks) -> Results<'a> {
        Results {
            author,
            books,
            first: 1,
            total: Count::Exact(books.len() as u64),
            past_the_end: false,
            links,
        }
    }

    #[test]
    fn the_description_needs_no_escaping() {
        assert!(!DESCRIPTION.0.contains(['<', '>', '&', '"', '\'']));
    }

    #[test]
    fn the_greeting_turns_at_noon() {
        assert_eq!(Greeting::at_hour(11), Greeting::Morning);
        assert_eq!(Greeting::at_hour(12), Greeting::Afternoon);
        let page = home(Greeting::Afternoon, None, "now").into_string();
        assert!(page.contains("Good afternoon and welcome to Penny.com"));
        assert!(page.contains("Today is now."));
    }

    #[test]
    fn visitor_and_database_text_is_escaped() {
        let links = PageLinks::default();
        let books = [book("<i>")];
        let page =
            search_results(&results("<script>x</script>", &books, &links), "now").into_string();
        assert!(
            page.contains("Books by &lt;script&gt;x&lt;/script&gt;:"),
            "{page}"
        );
        assert!(
            page.contains(r#"value="&lt;script&gt;x&lt;/script&gt;""#),
            "{page}"
        );
        assert!(
            page.contains(r#"<td class="author">&lt;i&gt;</td>"#),
            "{page}"
        );
        assert!(!page.contains("<script>x"));
        let form = search_form(&SearchBox::default(), Some("\"><script>"), "now").into_string();
        assert!(
            form.contains(
                r#"<a href="/searchresults?author=%22%3E%3Cscript%3E">&quot;&gt;&lt;script&gt;</a>"#
            ),
            "{form}"
        );
    }

    proptest::proptest! {
        #[test]
        fn database_text_is_escaped_as_maud_escapes_it(text in "(?s).{0,40}|[&<>\"'a é]{0,40}") {
            proptest::prop_assert_eq!(
                html! { (Text(&text)) }.into_string(),
                html! { (text) }.into_string()
            );
        }
    }

    #[test]
    fn page_links_appear_only_where_there_is_a_page() {
        let books = [book("a")];
        let none =
            search_results(&results("x", &books, &PageLinks::default()), "now").into_string();
        assert!(!none.contains("rel=\"next\"") && !none.contains("<nav"));
        let links = PageLinks {
            previous: None,
            next: Some("/searchresults?author=x&after=%7B%7D".into()),
        };
        let page = search_results(&results("x", &books, &links), "now").into_string();
        let next = r#"rel="next" href="/searchresults?author=x&amp;after=%7B%7D">Next →</a>"#;
        assert_eq!(page.matches(next).count(), 2, "above and below: {page}");
        assert!(!page.contains("rel=\"prev\""));
        assert_eq!(
            page.matches(r#"aria-disabled="true">← Previous"#).count(),
            2
        );
    }

    #[test]
    fn the_count_and_the_position_read_as_a_sentence() {
        let books: Vec<Book> = (0..50).map(|_| book("a")).collect();
        let links = PageLinks::default();
        let summary = |first, total| {
            let page = search_results(
                &Results {
                    author: "Tur",
                    books: &books,
                    first,
                    total,
                    past_the_end: false,
                    links: &links,
                },
                "now",
            )
            .into_string();
            let start = page.find("<p class=\"summary\"").unwrap();
            let end = start + page[start..].find("</p>").unwrap();
            page[start..end].to_string()
        };
        assert!(summary(51, Count::Exact(16_698)).ends_with("51–100 of 16,698 books."));
        assert!(summary(1, Count::MoreThan(1_000)).ends_with("1–50 of more than 1,000 books."));
        assert!(summary(1, Count::Exact(50)).ends_with("</strong> 50 books."));
        let one = [book("a")];
        let page = search_results(&results("x", &one, &links), "now").into_string();
        assert!(page.contains("</strong> 1 book."), "{page}");
        for (n, text) in [
            (1_234_567, "1,234,567"),
            (999, "999"),
            (1000, "1,000"),
            (0, "0"),
        ] {
            assert_eq!(Thousands(n).render().into_string(), text);
            assert_eq!(Thousands(n).to_string(), text);
        }
    }

    #[test]
    fn no_books_is_a_friendly_empty_state() {
        let page =
            search_results(&results("Knuth", &[], &PageLinks::default()), "now").into_string();
        assert!(page.contains("</strong> none."), "{page}");
        assert!(
            page.contains("No author’s name starts with “Knuth”."),
            "{page}"
        );
        assert!(!page.contains("<table"));
    }

    #[test]
    fn the_search_box_shows_the_search_and_its_error() {
        let form = search_form(
            &SearchBox {
                value: "kkk",
                error: Some("Too long."),
            },
            None,
            "now",
        )
        .into_string();
        assert!(form.contains(r#"value="kkk""#), "{form}");
        assert!(form.contains(r#"aria-invalid="true""#), "{form}");
        assert!(
            form.contains(r#"<p class="notice" id="author-error" role="alert">Too long.</p>"#),
            "{form}"
        );
        assert!(form.contains("Previous author search: none yet."));
        let page = home(Greeting::Morning, Some("Ker"), "now").into_string();
        assert!(
            page.contains(r#"<form class="search" action="/searchresults""#),
            "{page}"
        );
        assert!(
            page.contains(r#"<a href="/searchresults?author=Ker">Ker</a>"#),
            "{page}"
        );
        assert!(page.contains(r#"<meta name="description""#));
        assert!(
            !page.contains("search.js"),
            "the home page submits the form"
        );
        let script = format!(
            r#"<script src="{}" defer></script>"#,
            assets::url("search.js")
        );
        assert!(form.contains(&script), "{form}");
    }
}
